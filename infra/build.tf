# Where the functions are built: a dedicated Cloud Build service account (instead of the
# project's default compute account) writing images to a repository that cleans up after itself.

resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:Holds only images built from the public function bundles; Google-managed encryption applies.
  repository_id = "${local.prefix}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images Cloud Build makes from the batchbox function bundles."

  # Every deploy adds an image; only the recent ones can ever be rolled back to.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# Cloud Functions copies each bundle from the sources bucket into a bucket of its own,
# gcf-v2-sources-<project number>-<region> (its service agent reads ours), and the build
# downloads it from there as the build account. That bucket is created by the first deploy, so
# the grant is project-level, narrowed by a condition to that one bucket and its objects.
locals {
  gcf_sources_bucket = "projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

resource "google_project_iam_member" "build_reads_function_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member
  condition {
    title       = "gcf-v2-sources-only"
    description = "The bucket Cloud Functions copies batchbox's function sources to."
    expression  = "resource.name == \"${local.gcf_sources_bucket}\" || resource.name.startsWith(\"${local.gcf_sources_bucket}/\")"
  }
}

resource "google_project_iam_member" "build_logs" {
  project    = var.project_id
  role       = "roles/logging.logWriter"
  member     = google_service_account.build.member
  depends_on = [google_project_service.apis]
}
