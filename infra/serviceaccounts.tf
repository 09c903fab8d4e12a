# One runtime identity per function, so each holds only the roles its own work needs (iam.tf),
# one identity for the triggers that invoke them, and one for the builds.

locals {
  functions = toset(["submit", "poll", "complete"])
}

resource "google_service_account" "function" {
  for_each     = local.functions
  account_id   = "${local.prefix}-${each.key}"
  display_name = "batchbox ${each.key} function"
  description  = "Runtime identity of the batchbox ${each.key} Cloud Function."
}

# Eventarc and the Pub/Sub push subscriptions present this identity's token to the functions.
resource "google_service_account" "trigger" {
  account_id   = "${local.prefix}-trigger"
  display_name = "batchbox triggers"
  description  = "Identity Eventarc and Pub/Sub push use to invoke the batchbox functions."
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "batchbox function builds"
  description  = "Identity Cloud Build uses to turn the batchbox bundles into images."
}
