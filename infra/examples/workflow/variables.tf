variable "project_id" {
  description = "Project batchbox is deployed in."
  type        = string
}

variable "region" {
  description = "Region of the workflow and its Eventarc trigger."
  type        = string
  default     = "us-central1"
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
