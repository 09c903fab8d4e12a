# The trigger identity may invoke this function, and only this one (not every service of the
# project).
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  project  = var.project_id
  location = google_cloudfunctions2_function.function.location
  name     = google_cloudfunctions2_function.function.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.trigger_config.service_account_email}"
}

# Pub/Sub delivery we own, rather than the subscription Eventarc would create and manage for a
# topic trigger: only our own subscription can carry a dead-letter policy, a retry backoff, a
# retention and no inactivity expiry. functions-framework turns the pushed message into the same
# google.cloud.pubsub.topic.v1.messagePublished CloudEvent Eventarc would have delivered; the
# topic in the URL path becomes the event's source.
resource "google_pubsub_subscription" "push" {
  count                      = var.trigger_config.pubsub == null ? 0 : 1
  project                    = var.project_id
  name                       = "${var.name}-push"
  topic                      = var.trigger_config.pubsub.topic
  ack_deadline_seconds       = min(600, max(10, var.function_config.timeout_seconds))
  message_retention_duration = var.trigger_config.pubsub.message_retention_duration
  retain_acked_messages      = false

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.function.service_config[0].uri}/${var.trigger_config.pubsub.topic}"
    oidc_token {
      service_account_email = var.trigger_config.service_account_email
      audience              = google_cloudfunctions2_function.function.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.trigger_config.pubsub.retry_policy.minimum_backoff
    maximum_backoff = var.trigger_config.pubsub.retry_policy.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = var.trigger_config.pubsub.dead_letter_topic
    max_delivery_attempts = var.trigger_config.pubsub.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # an idle pipeline must not lose its subscription after 31 days
  }

  depends_on = [google_cloud_run_v2_service_iam_member.trigger_invoker]
}

# Dead-lettering acknowledges the message on this subscription as the Pub/Sub service agent.
resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  count        = var.trigger_config.pubsub == null ? 0 : 1
  project      = var.project_id
  subscription = google_pubsub_subscription.push[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"

  lifecycle {
    precondition {
      condition     = var.pubsub_service_agent != null
      error_message = "pubsub triggers need pubsub_service_agent to forward dead letters."
    }
  }
}
