# batchbox on Google Cloud: an inbox bucket whose uploads become Vertex AI batch jobs, a
# scheduled poller, a post-processor and a results topic carrying one CloudEvent per job.
#
# Files by concern: apis and names here; storage.tf, firestore.tf, pubsub.tf, scheduler.tf,
# build.tf (where function images are built), serviceaccounts.tf, iam.tf, functions.tf (the
# three functions, each an instance of modules/function).

locals {
  apis = [
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ]

  prefix = var.name_prefix
  # One registry per deployment: two deployments in one project (name_prefix apart) share none.
  firestore_database = coalesce(var.firestore_database, "${local.prefix}-registry")
  vertex_location    = coalesce(var.vertex_location, var.region)
  bucket_location    = coalesce(var.bucket_location, var.region)
  bucket_names = {
    inbox   = coalesce(var.inbox_bucket_name, "${var.project_id}-${local.prefix}-inbox")
    output  = coalesce(var.output_bucket_name, "${var.project_id}-${local.prefix}-output")
    sources = "${var.project_id}-${local.prefix}-sources"
  }
  topic_names = {
    poll         = "${local.prefix}-poll"
    job_finished = "${local.prefix}-job-finished"
    results      = "${local.prefix}-results"
  }
  # "jobs/" whatever the caller wrote ("jobs", "/jobs/"): Settings normalises it the same way.
  output_prefix = "${trim(var.output_prefix, "/")}/"

  # The one settings object of batchbox.settings.Settings, as environment variables. Every
  # function gets the same values, so the three validate and route inputs identically; what a
  # function may actually do is decided by its service account's roles (iam.tf), not by this.
  settings_environment = {
    GOOGLE_CLOUD_PROJECT           = var.project_id
    GOOGLE_CLOUD_LOCATION          = local.vertex_location
    BATCHBOX_INBOX_BUCKET          = google_storage_bucket.inbox.name
    BATCHBOX_OUTPUT_BUCKET         = google_storage_bucket.output.name
    BATCHBOX_OUTPUT_PREFIX         = local.output_prefix
    BATCHBOX_FIRESTORE_DATABASE    = google_firestore_database.registry.name
    BATCHBOX_JOBS_COLLECTION       = var.jobs_collection
    BATCHBOX_JOB_FINISHED_TOPIC    = google_pubsub_topic.job_finished.name
    BATCHBOX_RESULTS_TOPIC         = google_pubsub_topic.results.name
    BATCHBOX_DEFAULT_MODEL         = var.default_model
    BATCHBOX_ALLOWED_MODELS        = jsonencode(var.allowed_models)
    BATCHBOX_ROUTES                = jsonencode(var.routes)
    BATCHBOX_MAX_RUNNING_JOBS      = tostring(var.max_running_jobs)
    BATCHBOX_STALL_WARNING_SECONDS = tostring(var.stall_warning_seconds)
    BATCHBOX_STALL_CANCEL_SECONDS  = tostring(var.stall_cancel_seconds)
    BATCHBOX_MAX_EVENT_AGE_SECONDS = tostring(var.max_event_age_seconds)
    BATCHBOX_POLL_BUDGET_SECONDS   = tostring(min(var.poll_budget_seconds, floor(var.poll_function.timeout_seconds / 2)))
    BATCHBOX_LOG_LEVEL             = var.log_level
  }
  function_environment = merge(var.extra_environment_variables, local.settings_environment)
}

# The project number names the bucket Cloud Functions copies function sources to (build.tf).
data "google_project" "this" {
  project_id = var.project_id
  depends_on = [google_project_service.apis]
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])
  project  = var.project_id
  service  = each.value
  # Other workloads of the project may use the same APIs: never switch them off on destroy.
  disable_on_destroy = false
}

# Service agents are created lazily by Google; these make them exist before IAM names them.
resource "google_project_service_identity" "pubsub" {
  provider   = google-beta
  project    = var.project_id
  service    = "pubsub.googleapis.com"
  depends_on = [google_project_service.apis]
}

resource "google_project_service_identity" "aiplatform" {
  provider   = google-beta
  project    = var.project_id
  service    = "aiplatform.googleapis.com"
  depends_on = [google_project_service.apis]
}

# The Cloud Storage service agent publishes the bucket notifications Eventarc turns into events.
data "google_storage_project_service_account" "gcs" {
  project    = var.project_id
  depends_on = [google_project_service.apis]
}
