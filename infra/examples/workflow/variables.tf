variable "project_id" {
  description = "Project batchbox is deployed in."
  type        = string
}

variable "region" {
  description = "Region of the workflow and its Eventarc trigger."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of the workflow's, trigger's and service accounts' names; use the batchbox deployment's name_prefix to keep two deployments' workflows apart."
  type        = string
  default     = "batchbox"
  validation {
    # Service account ids are 6-30 characters; the longest suffix used is "-result-trigger".
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-14 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen."
  }
}

variable "enable_apis" {
  description = "Enable the APIs the workflow and its trigger need. Set false when the project is managed elsewhere."
  type        = bool
  default     = true
}

variable "results_topic" {
  description = "The batchbox results topic (the results_topic output of infra/), projects/<p>/topics/<t>."
  type        = string
}

variable "output_bucket" {
  description = "The batchbox output bucket (the output_bucket output of infra/); the workflow reads summaries and results there."
  type        = string
}

variable "bigquery_table" {
  description = "Optional project.dataset.table the workflow appends each successful job's results to. Empty: log only."
  type        = string
  default     = ""
}
