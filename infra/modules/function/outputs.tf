output "name" {
  description = "Function name."
  value       = google_cloudfunctions2_function.function.name
}

output "uri" {
  description = "HTTPS address of the function (reachable from internal sources only by default)."
  value       = google_cloudfunctions2_function.function.service_config[0].uri
}

output "bundle_object" {
  description = "gs:// URI of the deployed source bundle."
  value       = "gs://${google_storage_bucket_object.bundle.bucket}/${google_storage_bucket_object.bundle.name}"
}

output "eventarc_trigger" {
  description = "Eventarc trigger of a storage-triggered function (null otherwise)."
  value       = try(google_cloudfunctions2_function.function.event_trigger[0].trigger, null)
}

output "push_subscription" {
  description = "Push subscription of a Pub/Sub-triggered function (null otherwise)."
  value       = try(google_pubsub_subscription.push[0].name, null)
}
