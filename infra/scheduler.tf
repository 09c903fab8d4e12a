# The clock of the pipeline: every tick, poll looks at each active job once. Batch jobs take
# minutes to days, so a tick every couple of minutes bounds the delay of a result event without
# a function sleeping in a loop.

resource "google_cloud_scheduler_job" "poll" {
  name        = local.topic_names.poll
  region      = var.region
  description = "Publishes the batchbox poll tick."
  schedule    = var.poll_schedule
  time_zone   = var.poll_time_zone

  # No retry_config: Cloud Scheduler does not retry a failed run unless asked (retry_count
  # defaults to 0, and the provider does not even send a 0), which suits a tick whose next one
  # is never far away.

  pubsub_target {
    topic_name = google_pubsub_topic.poll.id
    data       = base64encode(jsonencode({ tick = "scheduled" }))
    attributes = {
      origin = "cloud-scheduler"
    }
  }

  depends_on = [google_project_service.apis]
}
