# Topics between the functions, the results topic for the outside world, and a dead-letter topic
# (with a pull subscription that holds what lands there) for each internal subscription. The
# subscriptions that deliver to poll and complete are created in modules/function/triggers.tf.

resource "google_pubsub_topic" "poll" {
  #checkov:skip=CKV_GCP_83:Ticks carry no data worth a customer-managed key; Google-managed encryption applies.
  name = local.topic_names.poll
  # A tick is worth nothing a few minutes later: keep none beyond the subscription's own.
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "job_finished" {
  #checkov:skip=CKV_GCP_83:Messages carry job ids and states only; Google-managed encryption applies.
  name       = local.topic_names.job_finished
  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "results" {
  #checkov:skip=CKV_GCP_83:Events carry URIs, counts and states, not the prompts or responses; Google-managed encryption applies.
  name = local.topic_names.results
  # Lets a subscription created after the fact seek back to events published before it existed.
  message_retention_duration = var.results_topic_retention
  depends_on                 = [google_project_service.apis]
}

locals {
  # Internal subscriptions whose undeliverable messages are kept aside, by topic key.
  dead_lettered = toset(["poll", "job_finished"])
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Copies of internal messages (job ids and states); Google-managed encryption applies.
  for_each   = local.dead_lettered
  name       = "${local.topic_names[each.key]}-dead-letter"
  depends_on = [google_project_service.apis]
}

# A topic without a subscription drops what is published to it: this is where dead letters wait.
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_lettered
  name                       = "${local.topic_names[each.key]}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expire for inactivity; dead letters are rare by design
  }
}

# Pub/Sub forwards dead letters as its own service agent.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_lettered
  topic    = google_pubsub_topic.dead_letter[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_project_service_identity.pubsub.email}"
}
