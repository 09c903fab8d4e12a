# The bundle is uploaded under its content-hash name (<function>-<sha256[:16]>.zip): a code
# change is a new object and so a new build and revision; a rebuild of unchanged sources is the
# same object and changes nothing.

resource "google_storage_bucket_object" "bundle" {
  bucket       = var.source_bucket
  name         = "${var.name}/${basename(var.bundle.path)}"
  source       = var.bundle.path
  content_type = "application/zip"

  lifecycle {
    precondition {
      condition     = try(filesha256(var.bundle.path), "") == var.bundle.sha256
      error_message = "The bundle ${var.bundle.path} is missing or differs from manifest.json: rebuild with `nox -s package`."
    }
  }
}
