# Chaining on batchbox: every result event published to the results topic starts this workflow
# (Eventarc, Pub/Sub transport on the existing topic). The workflow keeps the succeeded and
# partially_succeeded outcomes, logs them, reads the job summary and, optionally, loads the
# results into BigQuery.

locals {
  bigquery_dataset = var.bigquery_table == "" ? null : split(".", var.bigquery_table)[1]
}

resource "google_service_account" "workflow" {
  account_id   = "batchbox-on-result"
  display_name = "batchbox result workflow"
}

resource "google_service_account" "trigger" {
  account_id   = "batchbox-on-result-trigger"
  display_name = "batchbox result workflow trigger"
}

resource "google_workflows_workflow" "on_result" {
  name            = "batchbox-on-result"
  region          = var.region
  description     = "Logs each successful batchbox job, reads its summary and optionally loads its results."
  service_account = google_service_account.workflow.id
  call_log_level  = "LOG_ERRORS_ONLY"
  source_contents = file("${path.module}/workflow.yaml")
  user_env_vars = {
    BIGQUERY_TABLE = var.bigquery_table
  }
}

resource "google_eventarc_trigger" "on_result" {
  name     = "batchbox-on-result"
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
}

# The trigger: receive events and start executions.
resource "google_project_iam_member" "trigger" {
  for_each = toset(["roles/eventarc.eventReceiver", "roles/workflows.invoker"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.trigger.member
}

# The workflow: write its logs, read the job folders.
resource "google_project_iam_member" "workflow_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.workflow.member
}

resource "google_storage_bucket_iam_member" "workflow_reads_outputs" {
  bucket = var.output_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.workflow.member
}

# Only when loading into BigQuery: run load jobs, write the one dataset.
resource "google_project_iam_member" "workflow_bigquery_jobs" {
  count   = local.bigquery_dataset == null ? 0 : 1
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.workflow.member
}

resource "google_bigquery_dataset_iam_member" "workflow_writes_dataset" {
  count      = local.bigquery_dataset == null ? 0 : 1
  project    = split(".", var.bigquery_table)[0]
  dataset_id = local.bigquery_dataset
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.workflow.member
}
