"""Names derived from an input object: the idempotency key, the job id and where outputs go.

An object name is user data. It never becomes part of a path as it is: the job id keeps a short,
lowercased slug of the file's base name plus a hash of the whole key, so ``..``, absolute paths,
slashes and odd characters cannot lead anywhere outside the job's own prefix.
"""

from __future__ import annotations

import hashlib
import re

# The request label that carries each input line's number through Vertex AI, which returns
# results in its own order: submit adds it to every request it stages, complete matches by it.
LINE_LABEL = "batchbox-line"

_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")
_SLUG_MAX = 40


def idempotency_key(bucket: str, name: str, generation: str) -> str:
    """``bucket/name#generation``: one upload, however many times its event is delivered."""
    return f"{bucket}/{name}#{generation}"


def job_id_for(bucket: str, name: str, generation: str) -> str:
    """A short id, unique per upload, made only of ``[a-z0-9-]``: safe as a path segment, a
    Firestore document id and part of a Vertex display name."""
    key = idempotency_key(bucket, name, generation)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    base = name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    slug = _SLUG_UNSAFE.sub("-", stem.lower()).strip("-")[:_SLUG_MAX].strip("-") or "input"
    return f"{slug}-{digest}"


def job_prefix_uri(output_bucket: str, output_prefix: str, job_id: str) -> str:
    """``gs://output/jobs/<job_id>/``: everything batchbox writes for one job lives below it."""
    if not job_id or _SLUG_UNSAFE.sub("", job_id.replace("-", "")) != job_id.replace("-", ""):
        raise ValueError(f"job id {job_id!r} is not of the form batchbox makes")
    return f"gs://{output_bucket}/{output_prefix}{job_id}/"


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` to ``(bucket, name)``."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a Cloud Storage URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, name
