output "workflow" {
  description = "The workflow started for every result event."
  value       = google_workflows_workflow.on_result.id
}

output "executions_command" {
  description = "Lists the workflow's recent executions."
  value       = "gcloud workflows executions list ${google_workflows_workflow.on_result.name} --location=${var.region}"
}
