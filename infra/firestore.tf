# The job registry: one document per input, every transition in a transaction.
#
# No composite index is declared: the only query is poll's `stage in [...]` on one field, read
# in pages ordered by document id (Firestore's own order), which Firestore's automatic
# single-field indexes serve. Add one here only if a query gains a second filter or an order_by
# on another field.

resource "google_firestore_database" "registry" {
  project     = var.project_id
  name        = local.firestore_database
  location_id = coalesce(var.firestore_location, var.region)
  type        = "FIRESTORE_NATIVE"
  # Transactions lock what they read: two pollers updating one job serialise instead of racing.
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  # The registry is what makes redelivered events harmless: guard it unless asked not to.
  delete_protection_state = var.force_destroy ? "DELETE_PROTECTION_DISABLED" : "DELETE_PROTECTION_ENABLED"
  deletion_policy         = "DELETE"

  depends_on = [google_project_service.apis]
}
