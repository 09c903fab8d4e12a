# One runtime identity per function, so each holds only the roles its own work needs (iam.tf),
# one identity per trigger, so a trigger may invoke its own function and no other, and one for
# the builds.

locals {
  functions = toset(["submit", "poll", "complete"])
}

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "${local.prefix}-${each.key}"
  display_name = "batchbox ${each.key} function"
  description  = "Runtime identity of the batchbox ${each.key} Cloud Function."
  depends_on   = [google_project_service.apis]
}

# Eventarc (submit) and the Pub/Sub push subscriptions (poll, complete) present this identity's
# token to the function they trigger.
resource "google_service_account" "trigger" {
  for_each     = local.functions
  account_id   = "${local.prefix}-${each.key}-trigger"
  display_name = "batchbox ${each.key} trigger"
  description  = "Identity the trigger of the batchbox ${each.key} function invokes it as."
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "batchbox function builds"
  description  = "Identity Cloud Build uses to turn the batchbox bundles into images."
  depends_on   = [google_project_service.apis]
}
