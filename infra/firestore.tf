# The job registry: one document per input, every transition in a transaction.
#
# Poll's `stage in [...]`, read in pages ordered by document id (Firestore's own order), is
# served by Firestore's automatic single-field indexes. The one composite index serves the
# running-job cap's count: stage == RUNNING and running_jobs >= 0, two fields.

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

# The running-job cap is counted from the count each RUNNING record stores (an aggregation
# query), not by reading every open record on each submission.
resource "google_firestore_index" "running_jobs" {
  project    = var.project_id
  database   = google_firestore_database.registry.name
  collection = var.jobs_collection

  fields {
    field_path = "stage"
    order      = "ASCENDING"
  }
  fields {
    field_path = "running_jobs"
    order      = "ASCENDING"
  }
}
