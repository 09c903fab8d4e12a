# Who may do what. Bindings sit on the narrowest resource that exists: a bucket (narrowed to
# the output prefix by a condition), a topic, the registry database (by condition); only
# Vertex AI and Eventarc, which have no resource-level IAM for what batchbox does, get
# project-level roles, and Vertex AI's is a custom role with the batch-job calls alone.
#
#   function   reads              writes                        publishes to     batch jobs
#   submit     inbox              output/<prefix>               job-finished,    create, list
#                                                               results
#   poll       inbox (+ list)     output/<prefix>               job-finished,    create, get, list,
#                                                               results          cancel
#   complete   output (+ list)    output/<prefix>               job-finished,    create, list
#                                                               results
#   (all three read and write the job registry)
#
# poll reads the inbox because the reconciler resumes an intake whose submit worker died and
# the inbox sweep lists it; complete creates jobs because it submits re-drives; any of them
# may finish an input (the last job refused or gone) and so announce it on job-finished.
#
# tests/infra/test_permissions.py derives these calls from the adapters and checks the roles
# below allow exactly them.

locals {
  # Object names under the output prefix, as IAM conditions see them.
  output_prefix_resource = "projects/_/buckets/${google_storage_bucket.output.name}/objects/${local.output_prefix}"
  registry_resource      = "projects/${var.project_id}/databases/${google_firestore_database.registry.name}"
  function_members       = { for name, account in google_service_account.function : name => account.member }
}

# ---------------------------------------------------------------------------------------------
# Runtime identities of the functions

resource "google_storage_bucket_iam_member" "reads_inbox" {
  for_each = toset(["submit", "poll"])
  bucket   = google_storage_bucket.inbox.name
  role     = "roles/storage.objectViewer"
  member   = local.function_members[each.key]
}

# complete lists a job's prediction files, and listing needs a bucket-wide grant (a list
# request names the bucket, not an object). submit only writes and deletes under the prefix.
resource "google_storage_bucket_iam_member" "complete_reads_output" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectViewer"
  member = local.function_members["complete"]
}

# Create, overwrite and delete only under the output prefix (staged inputs, reports, results).
resource "google_storage_bucket_iam_member" "writes_output_prefix" {
  for_each = local.functions
  bucket   = google_storage_bucket.output.name
  role     = "roles/storage.objectUser"
  member   = local.function_members[each.key]
  condition {
    title       = "output-prefix-only"
    description = "Objects under the batchbox output prefix."
    expression  = "resource.name.startsWith(\"${local.output_prefix_resource}\")"
  }
}

resource "google_project_iam_member" "registry_user" {
  for_each = local.functions
  project  = var.project_id
  role     = "roles/datastore.user"
  member   = local.function_members[each.key]
  condition {
    title       = "job-registry-only"
    description = "The batchbox Firestore database, not the project's others."
    expression  = "resource.name == \"${local.registry_resource}\""
  }
}

# Batch prediction jobs have no resource-level IAM, and roles/aiplatform.user would allow
# every other Vertex AI call too (endpoints, models, datasets, ...): a custom role per function
# with the calls its code makes. submit creates a job after looking it up by display name, and
# so does complete for a re-drive; poll also reads and cancels jobs (and submits queued ones).
locals {
  batch_job_permissions = {
    submit = [
      "aiplatform.batchPredictionJobs.create",
      "aiplatform.batchPredictionJobs.list",
    ]
    poll = [
      "aiplatform.batchPredictionJobs.cancel",
      "aiplatform.batchPredictionJobs.create",
      "aiplatform.batchPredictionJobs.get",
      "aiplatform.batchPredictionJobs.list",
    ]
    complete = [
      "aiplatform.batchPredictionJobs.create",
      "aiplatform.batchPredictionJobs.list",
    ]
  }
}

# A destroyed custom role stays soft-deleted for 7 days, and the provider undeletes it when the
# same role_id is created again in that time; from day 7 to day 37 the id cannot be used at all
# (README, "Tear down").
resource "google_project_iam_custom_role" "batch_jobs" {
  for_each    = local.batch_job_permissions
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_${each.key}_batch_jobs"
  title       = "batchbox ${each.key}: batch prediction jobs"
  description = "The Vertex AI batch prediction calls the batchbox ${each.key} function makes."
  permissions = each.value
  depends_on  = [google_project_service.apis]
}

resource "google_project_iam_member" "batch_jobs" {
  for_each = local.batch_job_permissions
  project  = var.project_id
  role     = google_project_iam_custom_role.batch_jobs[each.key].name
  member   = local.function_members[each.key]
}

resource "google_pubsub_topic_iam_member" "publishes_results" {
  for_each = local.functions
  topic    = google_pubsub_topic.results.id
  role     = "roles/pubsub.publisher"
  member   = local.function_members[each.key]
}

resource "google_pubsub_topic_iam_member" "publishes_job_finished" {
  for_each = local.functions
  topic    = google_pubsub_topic.job_finished.id
  role     = "roles/pubsub.publisher"
  member   = local.function_members[each.key]
}

# ---------------------------------------------------------------------------------------------
# Triggers

# Eventarc delivers only to identities holding this role; it exists at project level only.
# Only submit's trigger is Eventarc's (poll and complete are pushed to by subscriptions).
resource "google_project_iam_member" "trigger_event_receiver" {
  project    = var.project_id
  role       = "roles/eventarc.eventReceiver"
  member     = google_service_account.trigger["submit"].member
  depends_on = [google_project_service.apis]
}

# Pub/Sub mints the OIDC tokens of its push requests (ours, and those of the subscription
# Eventarc creates for submit) as each trigger identity.
resource "google_service_account_iam_member" "pubsub_mints_trigger_tokens" {
  for_each           = local.functions
  service_account_id = google_service_account.trigger[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_project_service_identity.pubsub.email}"
}

# Cloud Storage publishes the inbox's object events to the transport topic Eventarc creates and
# names itself, so the grant cannot be narrowed to a topic.
resource "google_project_iam_member" "gcs_publishes_events" {
  project    = var.project_id
  role       = "roles/pubsub.publisher"
  member     = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------------------------
# Vertex AI service agent: runs the batch jobs, reading the staged inputs and writing
# predictions, both under the output prefix. It never needs the inbox.

resource "google_storage_bucket_iam_member" "vertex_reads_output" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_project_service_identity.aiplatform.email}"
}

resource "google_storage_bucket_iam_member" "vertex_writes_output_prefix" {
  bucket = google_storage_bucket.output.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_project_service_identity.aiplatform.email}"
  condition {
    title       = "output-prefix-only"
    description = "Objects under the batchbox output prefix."
    expression  = "resource.name.startsWith(\"${local.output_prefix_resource}\")"
  }
}

# ---------------------------------------------------------------------------------------------
# BigQuery: the datasets job specs may name (var.bigquery_datasets, brought by the user)

# submit and poll check a source table and read its rows (poll when it resumes an intake);
# complete counts a destination table with queries: jobs of the project that read it. Each is a
# custom role with just those calls, the table reads granted on each dataset.
locals {
  bigquery_table_permissions = {
    submit   = ["bigquery.datasets.get", "bigquery.tables.get", "bigquery.tables.getData"]
    poll     = ["bigquery.datasets.get", "bigquery.tables.get", "bigquery.tables.getData"]
    complete = ["bigquery.tables.getData"]
  }
}

resource "google_project_iam_custom_role" "bigquery_tables" {
  for_each    = local.bigquery_table_permissions
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_${each.key}_bigquery_tables"
  title       = "batchbox ${each.key}: BigQuery tables"
  description = "The BigQuery table reads the batchbox ${each.key} function makes."
  permissions = each.value
  depends_on  = [google_project_service.apis]
}

resource "google_bigquery_dataset_iam_member" "submit_reads_datasets" {
  for_each   = var.bigquery_datasets
  project    = var.project_id
  dataset_id = each.value
  role       = google_project_iam_custom_role.bigquery_tables["submit"].name
  member     = local.function_members["submit"]
}

resource "google_bigquery_dataset_iam_member" "poll_reads_datasets" {
  for_each   = var.bigquery_datasets
  project    = var.project_id
  dataset_id = each.value
  role       = google_project_iam_custom_role.bigquery_tables["poll"].name
  member     = local.function_members["poll"]
}

resource "google_bigquery_dataset_iam_member" "complete_reads_datasets" {
  for_each   = var.bigquery_datasets
  project    = var.project_id
  dataset_id = each.value
  role       = google_project_iam_custom_role.bigquery_tables["complete"].name
  member     = local.function_members["complete"]
}

resource "google_project_iam_custom_role" "bigquery_queries" {
  project     = var.project_id
  role_id     = "${replace(local.prefix, "-", "_")}_complete_bigquery_queries"
  title       = "batchbox complete: BigQuery queries"
  description = "Run the queries that count a destination table (a query is a job of the project)."
  permissions = ["bigquery.jobs.create"]
  depends_on  = [google_project_service.apis]
}

resource "google_project_iam_member" "complete_runs_queries" {
  project = var.project_id
  role    = google_project_iam_custom_role.bigquery_queries.name
  member  = local.function_members["complete"]
}

# Vertex AI reads the source tables and creates and writes the destination tables as its
# service agent, in jobs of the project.
resource "google_bigquery_dataset_iam_member" "vertex_writes_datasets" {
  for_each   = var.bigquery_datasets
  project    = var.project_id
  dataset_id = each.value
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_project_service_identity.aiplatform.email}"
}

resource "google_project_iam_member" "vertex_runs_bigquery_jobs" {
  count   = length(var.bigquery_datasets) > 0 ? 1 : 0
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_project_service_identity.aiplatform.email}"
}
