# Three buckets, never one: Eventarc fires submit for every object finalized in the inbox (no
# prefix filter exists), so nothing batchbox or Vertex AI writes may land there. Outputs go to the
# output bucket; function bundles to a third bucket nobody uploads inputs to.

resource "google_storage_bucket" "inbox" {
  #checkov:skip=CKV_GCP_62:Access logs of the inbox are Cloud Audit Logs (Data Access for storage), not a legacy log bucket.
  name                        = local.bucket_names.inbox
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  # An upload overwritten before submit read it, or deleted by mistake, stays recoverable: submit
  # reads the exact generation its event names, and a human can restore the rest.
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_seconds
  }

  # Inputs are read once (submit stages a copy under the output bucket for Vertex AI); keep them
  # inbox_retention_days for reference, then let them go.
  dynamic "lifecycle_rule" {
    for_each = var.inbox_retention_days > 0 ? [var.inbox_retention_days] : []
    content {
      action {
        type = "Delete"
      }
      condition {
        age        = lifecycle_rule.value
        with_state = "LIVE"
      }
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      days_since_noncurrent_time = var.inbox_noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "output" {
  #checkov:skip=CKV_GCP_62:Access logs of the output bucket are Cloud Audit Logs (Data Access for storage), not a legacy log bucket.
  #checkov:skip=CKV_GCP_78:No versioning: every object is written under a fresh per-job prefix, and Vertex AI rewrites prediction files while it exports, which versioning would multiply. Soft delete covers mistakes.
  name                        = local.bucket_names.output
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_seconds
  }

  dynamic "lifecycle_rule" {
    for_each = var.output_retention_days > 0 ? [var.output_retention_days] : []
    content {
      action {
        type = "Delete"
      }
      condition {
        age = lifecycle_rule.value
      }
    }
  }

  depends_on = [google_project_service.apis]

  lifecycle {
    precondition {
      condition     = local.bucket_names.output != local.bucket_names.inbox
      error_message = "The output bucket must differ from the inbox: anything written to the inbox triggers submit again."
    }
  }
}

# Function source bundles, one object per content hash (see modules/function/bundle.tf).
resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Only Terraform and Cloud Build touch this bucket; Cloud Audit Logs record both.
  #checkov:skip=CKV_GCP_78:No versioning: objects are named by the SHA-256 of their content, so an object never changes.
  name                        = local.bucket_names.sources
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Bundles are rebuilt from git at any time; nothing here is worth blocking a destroy for.
  force_destroy = true

  depends_on = [google_project_service.apis]
}
