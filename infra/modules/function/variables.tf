variable "project_id" {
  description = "Project of the function."
  type        = string
}

variable "region" {
  description = "Region of the function (and default region of its trigger)."
  type        = string
}

variable "name" {
  description = "Function name; also the name of its Cloud Run service and the prefix of its trigger's resources."
  type        = string
}

variable "description" {
  description = "What the function does."
  type        = string
  default     = null
}

variable "entry_point" {
  description = "Python function in main.py that receives the CloudEvent."
  type        = string
}

variable "runtime" {
  description = "Cloud Functions runtime, e.g. python312."
  type        = string
}

variable "bundle" {
  description = "Source bundle built by batchbox.packaging: local path of the zip and its SHA-256 from manifest.json."
  type = object({
    path   = string
    sha256 = string
  })
}

variable "source_bucket" {
  description = "Bucket the bundle is uploaded to."
  type        = string
}

variable "build_service_account" {
  description = "Id (projects/.../serviceAccounts/...) of the account Cloud Build runs as."
  type        = string
}

variable "docker_repository" {
  description = "Id of the Artifact Registry repository the built image goes to."
  type        = string
}

variable "service_account_email" {
  description = "Runtime identity of the function; one per function."
  type        = string
}

variable "environment_variables" {
  description = "Runtime environment variables (the batchbox settings)."
  type        = map(string)
  default     = {}
}

variable "function_config" {
  description = "Sizing: memory (e.g. 512Mi), cpu, timeout, instance bounds and requests per instance."
  type = object({
    memory          = string
    cpu             = string
    timeout_seconds = number
    min_instances   = number
    max_instances   = number
    concurrency     = number
  })
}

variable "ingress_settings" {
  description = "Who may reach the function over HTTP."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"
}

variable "trigger_config" {
  description = <<-EOT
    How events reach the function; exactly one of:
    - storage: an Eventarc trigger on a bucket's object events, with the Eventarc retry_policy
      (RETRY_POLICY_RETRY or RETRY_POLICY_DO_NOT_RETRY);
    - pubsub: a push subscription to a topic, with a retry_policy (exponential backoff bounds)
      and a dead-letter topic after max_delivery_attempts. The ack deadline is the function's
      timeout, so Pub/Sub never redelivers a message the function is still working on.
    service_account_email is the identity the trigger invokes the function as.
  EOT
  type = object({
    service_account_email = string
    storage = optional(object({
      bucket       = string
      event_type   = optional(string, "google.cloud.storage.object.v1.finalized")
      region       = optional(string)
      retry_policy = string
    }))
    pubsub = optional(object({
      topic                      = string
      dead_letter_topic          = string
      max_delivery_attempts      = optional(number, 10)
      message_retention_duration = optional(string, "604800s")
      retry_policy = object({
        minimum_backoff = string
        maximum_backoff = string
      })
    }))
  })
  validation {
    condition     = (var.trigger_config.storage == null) != (var.trigger_config.pubsub == null)
    error_message = "trigger_config needs exactly one of storage or pubsub."
  }
  validation {
    condition = (
      var.trigger_config.storage == null
      || contains(["RETRY_POLICY_RETRY", "RETRY_POLICY_DO_NOT_RETRY"], try(var.trigger_config.storage.retry_policy, ""))
    )
    error_message = "trigger_config.storage.retry_policy must be RETRY_POLICY_RETRY or RETRY_POLICY_DO_NOT_RETRY."
  }
}

variable "pubsub_service_agent" {
  description = "Email of the project's Pub/Sub service agent, which forwards dead letters (pubsub triggers only)."
  type        = string
  default     = null
}
