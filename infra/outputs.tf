output "inbox_bucket" {
  description = "Drop JSONL files of Gemini requests here (gs://<inbox_bucket>/...)."
  value       = google_storage_bucket.inbox.name
}

output "output_bucket" {
  description = "Where each job writes, under <output_prefix><job_id>/: staged input, Vertex predictions, results, errors, summary."
  value       = google_storage_bucket.output.name
}

output "output_prefix" {
  description = "Prefix of every job's folder in the output bucket."
  value       = local.output_prefix
}

output "results_topic" {
  description = "Subscribe to this topic for the result events (CloudEvents, Pub/Sub binding: filter on attributes.ce-type)."
  value       = google_pubsub_topic.results.id
}

output "topics" {
  description = "Every topic by role: poll tick, job-finished, results."
  value = {
    poll         = google_pubsub_topic.poll.id
    job_finished = google_pubsub_topic.job_finished.id
    results      = google_pubsub_topic.results.id
  }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding messages the internal subscriptions gave up on, by topic."
  value       = { for key, subscription in google_pubsub_subscription.dead_letter : key => subscription.id }
}

output "firestore_database" {
  description = "Firestore database of the job registry."
  value       = google_firestore_database.registry.name
}

output "jobs_collection" {
  description = "Collection of job records in the registry database."
  value       = var.jobs_collection
}

output "functions" {
  description = "Deployed functions: name, HTTPS address, deployed bundle, runtime identity."
  value = {
    for name, function in { submit = module.submit, poll = module.poll, complete = module.complete } :
    name => {
      name            = function.name
      uri             = function.uri
      bundle          = function.bundle_object
      service_account = google_service_account.function[name].email
    }
  }
}

output "trigger_service_accounts" {
  description = "Identity each function's trigger (Eventarc for submit, a Pub/Sub push subscription for poll and complete) invokes it as, by function."
  value       = { for name, account in google_service_account.trigger : name => account.email }
}

output "environment" {
  description = "Settings the functions run with (batchbox.settings.Settings, as environment variables)."
  value       = local.function_environment
}
