resource "google_cloudfunctions2_function" "function" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description

  build_config {
    runtime           = var.runtime
    entry_point       = var.entry_point
    service_account   = var.build_service_account
    docker_repository = var.docker_repository
    source {
      storage_source {
        bucket = google_storage_bucket_object.bundle.bucket
        object = google_storage_bucket_object.bundle.name
      }
    }
  }

  service_config {
    available_memory                 = var.function_config.memory
    available_cpu                    = var.function_config.cpu
    timeout_seconds                  = var.function_config.timeout_seconds
    min_instance_count               = var.function_config.min_instances
    max_instance_count               = var.function_config.max_instances
    max_instance_request_concurrency = var.function_config.concurrency
    environment_variables            = var.environment_variables
    ingress_settings                 = var.ingress_settings
    all_traffic_on_latest_revision   = true
    service_account_email            = var.service_account_email
  }

  # Object events arrive through Eventarc; Pub/Sub messages through the push subscription in
  # triggers.tf (which, unlike Eventarc's own subscription, can dead-letter).
  dynamic "event_trigger" {
    for_each = var.trigger_config.storage == null ? [] : [var.trigger_config.storage]
    content {
      event_type            = event_trigger.value.event_type
      trigger_region        = coalesce(event_trigger.value.region, var.region)
      retry_policy          = event_trigger.value.retry_policy
      service_account_email = var.trigger_config.service_account_email
      event_filters {
        attribute = "bucket"
        value     = event_trigger.value.bucket
      }
    }
  }
}
