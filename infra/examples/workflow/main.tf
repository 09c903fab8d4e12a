# Chaining on batchbox: every result event published to the results topic starts this workflow
# (Eventarc, Pub/Sub transport on the existing topic). The workflow keeps the succeeded and
# partially_succeeded outcomes, logs them, reads the job summary and, optionally, loads the
# results into BigQuery.

locals {
  bigquery_dataset = var.bigquery_table == "" ? null : split(".", var.bigquery_table)[1]
  apis = concat(
    [
      "cloudresourcemanager.googleapis.com",
      "eventarc.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "pubsub.googleapis.com",
      "storage.googleapis.com",
      "workflows.googleapis.com",
    ],
    local.bigquery_dataset == null ? [] : ["bigquery.googleapis.com"],
  )
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])
  project  = var.project_id
  service  = each.value
  # batchbox and other workloads may use the same APIs: never switch them off on destroy.
  disable_on_destroy = false
}

resource "google_service_account" "workflow" {
  account_id   = "${var.name_prefix}-result-wf"
  display_name = "batchbox result workflow"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "trigger" {
  account_id   = "${var.name_prefix}-result-trigger"
  display_name = "batchbox result workflow trigger"
  depends_on   = [google_project_service.apis]
}

resource "google_workflows_workflow" "on_result" {
  name   = "${var.name_prefix}-on-result"
  region = var.region
  # The workflow holds no data: let terraform destroy remove it (the provider defaults to true).
  deletion_protection = false
  description         = "Logs each successful batchbox job, reads its summary and optionally loads its results."
  service_account     = google_service_account.workflow.id
  call_log_level      = "LOG_ERRORS_ONLY"
  source_contents     = file("${path.module}/workflow.yaml")
  user_env_vars = {
    BIGQUERY_TABLE = var.bigquery_table
  }
  depends_on = [google_project_service.apis]
}

# Eventarc checks the trigger's identity, and its own service agent's permissions, when it
# creates the trigger; on a new project both take a while to propagate.
resource "time_sleep" "iam_propagation" {
  create_duration = "60s"
  depends_on = [
    google_project_service.apis,
    google_project_iam_member.trigger,
  ]
}

resource "google_eventarc_trigger" "on_result" {
  name     = "${var.name_prefix}-on-result"
  location = var.region
  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }
  transport {
    pubsub {
      topic = var.results_topic
    }
  }
  destination {
    workflow = google_workflows_workflow.on_result.id
  }
  service_account = google_service_account.trigger.email
  depends_on      = [time_sleep.iam_propagation]
}

# The trigger: receive events and start executions.
resource "google_project_iam_member" "trigger" {
  for_each   = toset(["roles/eventarc.eventReceiver", "roles/workflows.invoker"])
  project    = var.project_id
  role       = each.value
  member     = google_service_account.trigger.member
  depends_on = [google_project_service.apis]
}

# The workflow: write its logs, read the job folders.
resource "google_project_iam_member" "workflow_logs" {
  project    = var.project_id
  role       = "roles/logging.logWriter"
  member     = google_service_account.workflow.member
  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "workflow_reads_outputs" {
  bucket     = var.output_bucket
  role       = "roles/storage.objectViewer"
  member     = google_service_account.workflow.member
  depends_on = [google_project_service.apis]
}

# Only when loading into BigQuery: run load jobs, write the one dataset.
resource "google_project_iam_member" "workflow_bigquery_jobs" {
  count      = local.bigquery_dataset == null ? 0 : 1
  project    = var.project_id
  role       = "roles/bigquery.jobUser"
  member     = google_service_account.workflow.member
  depends_on = [google_project_service.apis]
}

resource "google_bigquery_dataset_iam_member" "workflow_writes_dataset" {
  count      = local.bigquery_dataset == null ? 0 : 1
  project    = split(".", var.bigquery_table)[0]
  dataset_id = local.bigquery_dataset
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.workflow.member
  depends_on = [google_project_service.apis]
}
