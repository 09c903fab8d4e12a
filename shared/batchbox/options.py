"""Per-input options: an object's custom metadata, else its prefix route, else the defaults.

Labels follow the Google Cloud label rules that Vertex AI enforces on a job (the same rules the
validator applies to ``request.labels``, in ``batchbox.validation.rules``): a bad key or value,
or more labels than fit beside batchbox's own, is a rejection with the reason, never a registry
write that fails on every delivery.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from batchbox import errors
from batchbox.models import JobOptions
from batchbox.settings import Settings, model_allowed
from batchbox.spec import JobSpec
from batchbox.validation import INPUT_FORMATS
from batchbox.validation.rules import MAX_LABELS, label_key_problem, label_value_problem

MODEL_PREFIX = "publishers/google/models/"
MAX_DISPLAY_NAME = 100
# Labels batchbox sets itself on every staged request, which count toward Vertex's limit.
RESERVED_LABELS = 1


class OptionsError(errors.PermanentError):
    """A per-input option is invalid; the input is rejected with this message."""


def parse_labels(text: str) -> dict[str, str]:
    """``team=nlp,run=7`` or a JSON object of strings, checked against the label rules.

    Raises:
        OptionsError: the text is malformed, or a label breaks a rule.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise OptionsError(f"metadata 'labels' is not valid JSON: {exc}") from exc
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise OptionsError("metadata 'labels' must be a JSON object of strings")
        labels = {str(k): v for k, v in value.items()}
    else:
        labels = {}
        for pair in text.split(","):
            key, sep, value = pair.partition("=")
            if not sep:
                raise OptionsError(
                    f"metadata 'labels' entry {pair!r} is not key=value; "
                    "write labels=team=nlp,run=7 or a JSON object"
                )
            labels[key.strip()] = value.strip()
    check_labels(labels, where="metadata 'labels'")
    return labels


def check_labels(labels: Mapping[str, str], *, where: str) -> None:
    """Raises OptionsError naming the first label that breaks a rule."""
    room = MAX_LABELS - RESERVED_LABELS
    if len(labels) > room:
        raise OptionsError(
            f"{where} has {len(labels)} labels; at most {room} fit (Vertex AI allows "
            f"{MAX_LABELS} and batchbox adds {RESERVED_LABELS} of its own): remove "
            f"{len(labels) - room}"
        )
    for key, value in labels.items():
        if problem := label_key_problem(key):
            raise OptionsError(
                f"{where}: label key {key!r} is not allowed: {problem.allowed}; {problem.fix}"
            )
        if problem := label_value_problem(value):
            raise OptionsError(
                f"{where}: the value {value!r} of label {key!r} is not allowed: "
                f"{problem.allowed}; {problem.fix}"
            )


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no", ""}:
        return False
    raise OptionsError(f"metadata {name!r} must be true or false, found {text!r}")


def normalise_model(model: str) -> str:
    """A publisher model by its short name; a tuned model by its full resource name."""
    return model.strip().removeprefix(MODEL_PREFIX)


def resolve_options(name: str, metadata: Mapping[str, str], settings: Settings) -> JobOptions:
    """Options for the input ``name`` with custom ``metadata``.

    Raises:
        OptionsError: an option is malformed, a label breaks a rule, or the model is outside
            the allowlist.
    """
    meta = {k.lower(): v for k, v in metadata.items()}
    route = settings.route_for(name)
    model = normalise_model(
        meta.get("model") or (route.model if route else None) or settings.default_model
    )
    if not model_allowed(model, settings.allowed_models):
        raise OptionsError(
            f"model {model!r} is not allowed here; allowed: {', '.join(settings.allowed_models)}. "
            "Set the object's 'model' metadata to one of them, or ask the operator to add it to "
            "BATCHBOX_ALLOWED_MODELS"
        )
    labels = dict(route.labels) if route else {}
    labels.update(parse_labels(meta.get("labels", "")))
    check_labels(labels, where="the input's labels (route and metadata)")
    partial = route.partial if route and route.partial is not None else False
    if "partial" in meta:
        partial = parse_bool("partial", meta["partial"])
    strict = parse_bool("strict", meta["strict"]) if "strict" in meta else False
    input_format = meta.get("format", "gemini").strip().lower() or "gemini"
    if input_format not in INPUT_FORMATS:
        raise OptionsError(
            f"metadata 'format' is {meta['format']!r}; use one of {', '.join(INPUT_FORMATS)} "
            "(openai: lines written for the OpenAI Batch API, converted to Gemini requests)"
        )
    display_name = meta.get("display-name") or meta.get("display_name")
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
        raise OptionsError(f"metadata 'display-name' is longer than {MAX_DISPLAY_NAME} characters")
    return JobOptions(
        model=model,
        display_name=display_name,
        labels=labels,
        partial=partial,
        strict=strict,
        input_format=input_format,
    )


def spec_metadata(spec: JobSpec, metadata: Mapping[str, str]) -> dict[str, str]:
    """A job spec's options as the metadata keys they stand for (the spec wins)."""
    values = dict(metadata)
    if spec.model:
        values["model"] = spec.model
    if spec.labels:
        values["labels"] = orjson.dumps(spec.labels).decode()
    if spec.display_name:
        values["display-name"] = spec.display_name
    values["partial"] = "true" if spec.partial else values.get("partial", "false")
    values["strict"] = "true" if spec.strict else values.get("strict", "false")
    return values
