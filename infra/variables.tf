# ---------------------------------------------------------------------------------------------
# Where

variable "project_id" {
  description = "Google Cloud project to deploy batchbox into."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets (unless bucket_location is set), Scheduler job, Eventarc trigger and Artifact Registry repository."
  type        = string
  default     = "us-central1"
}

variable "vertex_location" {
  description = "Vertex AI location the batch jobs run in (GOOGLE_CLOUD_LOCATION). Defaults to region."
  type        = string
  default     = null
}

variable "name_prefix" {
  description = "Prefix of every resource name (topics, functions, service accounts, default bucket names)."
  type        = string
  default     = "batchbox"
  validation {
    # Service account ids are 6-30 characters; the longest suffix used is "-complete-trigger".
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-13 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = { app = "batchbox" }
}

variable "iam_propagation_wait" {
  description = "How long the first apply waits after the APIs, service agents and IAM grants are in place before creating the functions (a duration in seconds, e.g. \"120s\"). Later applies do not wait again."
  type        = string
  default     = "120s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.iam_propagation_wait))
    error_message = "iam_propagation_wait must be whole seconds, such as \"120s\"."
  }
}

variable "enable_apis" {
  description = "Enable the Google APIs batchbox needs. Set false when the project is managed elsewhere."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Buckets

variable "inbox_bucket_name" {
  description = "Name of the inbox bucket users drop JSONL files into. Defaults to <project_id>-<name_prefix>-inbox."
  type        = string
  default     = null
}

variable "output_bucket_name" {
  description = "Name of the output bucket (staged inputs, Vertex predictions, results). Defaults to <project_id>-<name_prefix>-output. Must differ from the inbox: anything written to the inbox triggers submit."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Location of the inbox and output buckets. Defaults to region; the Eventarc trigger follows the inbox's location."
  type        = string
  default     = null
}

variable "output_prefix" {
  description = "Prefix under which every job writes in the output bucket (BATCHBOX_OUTPUT_PREFIX). Write access of the functions and of Vertex AI is limited to it."
  type        = string
  default     = "jobs/"
  validation {
    condition     = length(trim(var.output_prefix, "/")) > 0
    error_message = "output_prefix must not be empty: writes are confined to it."
  }
}

variable "inbox_retention_days" {
  description = "Days an uploaded input stays in the inbox before lifecycle deletes it (its staged copy in the output bucket is what Vertex reads). 0 keeps inputs forever."
  type        = number
  default     = 30
  validation {
    condition     = var.inbox_retention_days >= 0
    error_message = "inbox_retention_days must be 0 (keep) or more."
  }
}

variable "inbox_noncurrent_retention_days" {
  description = "Days an overwritten or deleted inbox object stays recoverable as a noncurrent version."
  type        = number
  default     = 7
  validation {
    condition     = var.inbox_noncurrent_retention_days >= 1
    error_message = "inbox_noncurrent_retention_days must be at least 1."
  }
}

variable "output_retention_days" {
  description = "Days job outputs (staged inputs, predictions, results, reports) are kept. 0 keeps them forever."
  type        = number
  default     = 90
  validation {
    condition     = var.output_retention_days >= 0
    error_message = "output_retention_days must be 0 (keep) or more."
  }
}

variable "soft_delete_retention_seconds" {
  description = "Soft-delete window of the inbox and output buckets: a deleted object can be restored for this long. 0 disables; otherwise 7 to 90 days."
  type        = number
  default     = 604800
  validation {
    condition     = var.soft_delete_retention_seconds == 0 || (var.soft_delete_retention_seconds >= 604800 && var.soft_delete_retention_seconds <= 7776000)
    error_message = "soft_delete_retention_seconds must be 0 or between 604800 (7 days) and 7776000 (90 days)."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete non-empty buckets and the Firestore database. Keep false in production; set true (and apply) before tearing a test deployment down."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Job registry

variable "bigquery_datasets" {
  description = "BigQuery datasets (DATASET ids in this project) that job specs may name as sources or destinations. batchbox owns none: bring them, in the Vertex AI region. The functions may read them; the Vertex AI service agent may read and write them."
  type        = set(string)
  default     = []
  validation {
    condition     = alltrue([for d in var.bigquery_datasets : can(regex("^\\w{1,1024}$", d))])
    error_message = "bigquery_datasets holds dataset ids: letters, digits and underscores."
  }
}

variable "firestore_database" {
  description = "Firestore (native mode) database holding the job registry (BATCHBOX_FIRESTORE_DATABASE). Defaults to <name_prefix>-registry, so two deployments in one project keep separate registries. A dedicated database keeps IAM scoped to it."
  type        = string
  default     = null
  validation {
    condition     = var.firestore_database == null || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be 4-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "firestore_location" {
  description = "Firestore location (a region such as us-central1 or a multi-region such as nam5). Defaults to region."
  type        = string
  default     = null
}

variable "firestore_point_in_time_recovery" {
  description = "Keep 7 days of point-in-time recovery for the job registry."
  type        = bool
  default     = true
}

variable "jobs_collection" {
  description = "Firestore collection of job records (BATCHBOX_JOBS_COLLECTION)."
  type        = string
  default     = "batchbox-jobs"
}

# ---------------------------------------------------------------------------------------------
# Messaging and schedule

variable "results_topic_retention" {
  description = "How long the results topic keeps published events, so a subscriber created late can seek back to them."
  type        = string
  default     = "604800s"
}

variable "dead_letter_retention" {
  description = "How long dead-lettered messages wait in their pull subscriptions for someone to look at them."
  type        = string
  default     = "604800s"
}

variable "job_finished_max_delivery_attempts" {
  description = "Deliveries of one job-finished message to complete before it is dead-lettered (5-100)."
  type        = number
  default     = 10
  validation {
    condition     = var.job_finished_max_delivery_attempts >= 5 && var.job_finished_max_delivery_attempts <= 100
    error_message = "job_finished_max_delivery_attempts must be between 5 and 100."
  }
}

variable "poll_schedule" {
  description = "Cron schedule of the poll tick (Cloud Scheduler syntax)."
  type        = string
  default     = "*/2 * * * *"
}

variable "poll_budget_seconds" {
  description = "How long one poll tick starts job checks and resumed intakes (BATCHBOX_POLL_BUDGET_SECONDS); the next tick starts where it stopped. Keep it under the interval of poll_schedule; a tick also ends the intakes it started (an upload validated and staged), so it can run longer (overlapping ticks are safe). It is capped at half of poll_function's timeout."
  type        = number
  default     = 90
  validation {
    condition     = var.poll_budget_seconds >= 1
    error_message = "poll_budget_seconds must be at least 1."
  }
}

variable "poll_time_zone" {
  description = "Time zone the poll schedule is read in."
  type        = string
  default     = "Etc/UTC"
}

# ---------------------------------------------------------------------------------------------
# Functions

variable "bundle_dir" {
  description = "Folder holding the function bundles and manifest.json built by `nox -s package` (python -m batchbox.packaging). Relative paths are relative to this module."
  type        = string
  default     = "../dist/functions"
}

variable "runtime" {
  description = "Cloud Functions runtime. Keep in step with the Python the bundles' requirements are pinned for."
  type        = string
  default     = "python312"
}

variable "ingress_settings" {
  description = "Who may reach the functions over HTTP. Eventarc and Pub/Sub push count as internal, so nothing else needs them."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress_settings)
    error_message = "ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "submit_function" {
  description = "Sizing of submit, which streams and validates each uploaded file once (CPU bound; one file per instance). Eventarc-triggered functions may run at most 540 s."
  type = object({
    memory          = optional(string, "1Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 540)
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 10)
    concurrency     = optional(number, 1)
  })
  default = {}
  validation {
    condition     = var.submit_function.timeout_seconds > 0 && var.submit_function.timeout_seconds <= 540
    error_message = "submit_function.timeout_seconds must be between 1 and 540 (the Eventarc limit)."
  }
}

variable "poll_function" {
  description = "Sizing of poll, the reconciler run on every tick (I/O bound, a few API calls per active job; it also resumes the intake of an upload whose submit worker died, so give it submit's memory and timeout). One instance suffices; overlapping ticks are safe. Its timeout is also the ack deadline of its Pub/Sub push subscription (at most 600 s)."
  type = object({
    memory          = optional(string, "1Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 540)
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 2)
    concurrency     = optional(number, 1)
  })
  default = {}
  validation {
    condition     = var.poll_function.timeout_seconds >= 10 && var.poll_function.timeout_seconds <= 600
    error_message = "poll_function.timeout_seconds must be between 10 and 600 (the Pub/Sub ack deadline range)."
  }
}

variable "complete_function" {
  description = "Sizing of complete, which streams a finished job's prediction files into results (memory for the summary, one job per instance). Its timeout is also the ack deadline of its Pub/Sub push subscription (at most 600 s)."
  type = object({
    memory          = optional(string, "1Gi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 540)
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 5)
    concurrency     = optional(number, 1)
  })
  default = {}
  validation {
    condition     = var.complete_function.timeout_seconds >= 10 && var.complete_function.timeout_seconds <= 600
    error_message = "complete_function.timeout_seconds must be between 10 and 600 (the Pub/Sub ack deadline range)."
  }
}

# ---------------------------------------------------------------------------------------------
# batchbox settings (environment variables of the functions; see batchbox.settings.Settings)

variable "default_model" {
  description = "Model used when neither the object's metadata nor a route names one (BATCHBOX_DEFAULT_MODEL). Must be in allowed_models."
  type        = string
  default     = "gemini-2.5-flash"
}

variable "allowed_models" {
  description = "Models a file may ask for (BATCHBOX_ALLOWED_MODELS)."
  type        = list(string)
  default = [
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite-001",
  ]
}

variable "routes" {
  description = "Per-prefix defaults for inbox objects (BATCHBOX_ROUTES): files under prefix get this model, partial-results policy and labels."
  type = list(object({
    prefix  = string
    model   = optional(string)
    partial = optional(bool)
    labels  = optional(map(string), {})
  }))
  default = []
}

variable "max_running_jobs" {
  description = "Batch jobs batchbox keeps running at once; more inputs wait QUEUED (BATCHBOX_MAX_RUNNING_JOBS)."
  type        = number
  default     = 8
}

variable "stall_warning_seconds" {
  description = "A job pending or running this long gets a stalled event (BATCHBOX_STALL_WARNING_SECONDS); 0 switches the warning off."
  type        = number
  default     = 86400
  nullable    = false
}

variable "stall_cancel_seconds" {
  description = "A job pending or running this long is cancelled (BATCHBOX_STALL_CANCEL_SECONDS); must exceed stall_warning_seconds; 0 never cancels."
  type        = number
  default     = 259200
  nullable    = false
}

variable "max_event_age_seconds" {
  description = "Events older than this are acknowledged and dropped instead of retried forever (BATCHBOX_MAX_EVENT_AGE_SECONDS)."
  type        = number
  default     = 21600
}

variable "log_level" {
  description = "Log level of the functions (BATCHBOX_LOG_LEVEL)."
  type        = string
  default     = "INFO"
  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "extra_environment_variables" {
  description = "Further BATCHBOX_* settings for all functions (e.g. BATCHBOX_MAX_LINES, BATCHBOX_PRICES as JSON). Keys set from the variables above take precedence."
  type        = map(string)
  default     = {}
}
