terraform {
  required_version = ">= 1.5.0"
  required_providers {
    # One major, at least the release the configuration was checked against (tests/infra
    # provider-schema.json); .terraform.lock.hcl records the exact builds (README, "Pinning").
    google = {
      source  = "hashicorp/google"
      version = "~> 7.45"
    }
    # Only for google_project_service_identity, which makes the Pub/Sub and Vertex AI service
    # agents exist before IAM bindings name them.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.45"
    }
    # time_sleep: waits for IAM grants to propagate before the functions are created.
    time = {
      source  = "hashicorp/time"
      version = "~> 0.13"
    }
  }
}

provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}

provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = var.labels
}
