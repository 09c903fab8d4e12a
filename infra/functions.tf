# The three functions. Bundles come from `nox -s package` (python -m batchbox.packaging), whose
# manifest.json names each function's content-addressed zip.

locals {
  bundle_dir      = startswith(var.bundle_dir, "/") ? var.bundle_dir : "${path.module}/${var.bundle_dir}"
  bundle_manifest = jsondecode(file("${local.bundle_dir}/manifest.json"))
  bundles = {
    for name, bundle in local.bundle_manifest.functions : name => {
      path   = "${local.bundle_dir}/${bundle.bundle}"
      sha256 = bundle.sha256
    }
  }
  function_common = {
    build_service_account = google_service_account.build.id
    docker_repository     = google_artifact_registry_repository.functions.id
    source_bucket         = google_storage_bucket.sources.name
  }
}

# Grants reach every Google service only after a while, and the first deploy is when that
# matters: the build reads its source as the build account, Eventarc checks that the Cloud
# Storage service agent may publish when it creates submit's trigger, and a new project's
# service agents are still being set up. The provider's own examples wait 60 s for the build
# grants; Eventarc asks for a few minutes. Every function waits for every grant made here.
resource "time_sleep" "iam_propagation" {
  create_duration = var.iam_propagation_wait

  depends_on = [
    google_project_service.apis,
    google_project_service_identity.pubsub,
    google_project_service_identity.aiplatform,
    # builds
    google_artifact_registry_repository_iam_member.build_writer,
    google_project_iam_member.build_reads_function_sources,
    google_project_iam_member.build_logs,
    # triggers
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.trigger_event_receiver,
    google_service_account_iam_member.pubsub_mints_trigger_tokens,
    google_pubsub_topic_iam_member.dead_letter_publisher,
    # the functions at run time, and the Vertex AI service agent their jobs run as
    google_storage_bucket_iam_member.reads_inbox,
    google_storage_bucket_iam_member.complete_reads_output,
    google_storage_bucket_iam_member.writes_output_prefix,
    google_project_iam_member.registry_user,
    google_project_iam_member.batch_jobs,
    google_pubsub_topic_iam_member.publishes_results,
    google_pubsub_topic_iam_member.publishes_job_finished,
    google_storage_bucket_iam_member.vertex_reads_output,
    google_storage_bucket_iam_member.vertex_writes_output_prefix,
    google_bigquery_dataset_iam_member.submit_reads_datasets,
    google_bigquery_dataset_iam_member.poll_reads_datasets,
    google_bigquery_dataset_iam_member.complete_reads_datasets,
    google_project_iam_member.complete_runs_queries,
    google_bigquery_dataset_iam_member.vertex_writes_datasets,
    google_project_iam_member.vertex_runs_bigquery_jobs,
  ]
}

module "submit" {
  source                = "./modules/function"
  project_id            = var.project_id
  region                = var.region
  name                  = "${local.prefix}-submit"
  description           = "Validates a JSONL file dropped into the inbox and submits it as a Vertex AI batch job."
  entry_point           = "submit"
  runtime               = var.runtime
  bundle                = local.bundles["submit"]
  source_bucket         = local.function_common.source_bucket
  build_service_account = local.function_common.build_service_account
  docker_repository     = local.function_common.docker_repository
  service_account_email = google_service_account.function["submit"].email
  environment_variables = local.function_environment
  function_config       = var.submit_function
  ingress_settings      = var.ingress_settings
  trigger_config = {
    service_account_email = google_service_account.trigger["submit"].email
    storage = {
      bucket = google_storage_bucket.inbox.name
      # The inbox is single-region or dual-/multi-region; Eventarc listens where the bucket is.
      region = lower(google_storage_bucket.inbox.location)
      # Raise on transient failures and the upload is delivered again; submit acknowledges
      # permanent ones itself and drops events older than max_event_age_seconds.
      retry_policy = "RETRY_POLICY_RETRY"
    }
  }

  depends_on = [time_sleep.iam_propagation]
}

module "poll" {
  source                = "./modules/function"
  project_id            = var.project_id
  region                = var.region
  name                  = "${local.prefix}-poll"
  description           = "On every tick, advances each active batch job and announces the finished ones."
  entry_point           = "poll"
  runtime               = var.runtime
  bundle                = local.bundles["poll"]
  source_bucket         = local.function_common.source_bucket
  build_service_account = local.function_common.build_service_account
  docker_repository     = local.function_common.docker_repository
  service_account_email = google_service_account.function["poll"].email
  environment_variables = local.function_environment
  function_config       = var.poll_function
  ingress_settings      = var.ingress_settings
  pubsub_service_agent  = google_project_service_identity.pubsub.email
  trigger_config = {
    service_account_email = google_service_account.trigger["poll"].email
    pubsub = {
      topic             = google_pubsub_topic.poll.id
      dead_letter_topic = google_pubsub_topic.dead_letter["poll"].id
      # A tick is stale once the next one is due: keep it briefly, retry it a little, then set
      # it aside so a failing poll is visible without a backlog of ticks piling up.
      message_retention_duration = "600s"
      max_delivery_attempts      = 5
      retry_policy = {
        minimum_backoff = "10s"
        maximum_backoff = "60s"
      }
    }
  }

  depends_on = [time_sleep.iam_propagation]
}

module "complete" {
  source                = "./modules/function"
  project_id            = var.project_id
  region                = var.region
  name                  = "${local.prefix}-complete"
  description           = "Turns a finished batch job's predictions into results, errors and a summary, and publishes the result event."
  entry_point           = "complete"
  runtime               = var.runtime
  bundle                = local.bundles["complete"]
  source_bucket         = local.function_common.source_bucket
  build_service_account = local.function_common.build_service_account
  docker_repository     = local.function_common.docker_repository
  service_account_email = google_service_account.function["complete"].email
  environment_variables = local.function_environment
  function_config       = var.complete_function
  ingress_settings      = var.ingress_settings
  pubsub_service_agent  = google_project_service_identity.pubsub.email
  trigger_config = {
    service_account_email = google_service_account.trigger["complete"].email
    pubsub = {
      topic                      = google_pubsub_topic.job_finished.id
      dead_letter_topic          = google_pubsub_topic.dead_letter["job_finished"].id
      message_retention_duration = "604800s"
      max_delivery_attempts      = var.job_finished_max_delivery_attempts
      retry_policy = {
        minimum_backoff = "10s"
        maximum_backoff = "600s"
      }
    }
  }

  depends_on = [time_sleep.iam_propagation]
}
