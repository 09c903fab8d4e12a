"""The port that answers each request of a batch, and its deterministic default.

The emulator validates a request the way Vertex AI does, then hands it to a ``Responder`` and
wraps the answer into an output row. ``EchoResponder`` answers without any model, from the prompt
alone, so outputs are reproducible; a real model (or a recorded one) plugs in through
``--responder module:factory``.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

# Vertex bills an image (and, roughly, a short media clip) as 258 tokens.
MEDIA_PART_TOKENS = 258
_MEDIA_KEYS = ("inlineData", "inline_data", "fileData", "file_data")


@runtime_checkable
class Responder(Protocol):
    """Answers one request of a batch.

    ``request`` is a GenerateContentRequest as it appears in the input line (camelCase or
    snake_case, already validated); ``model`` is the bare model id, e.g. ``gemini-2.5-flash``.
    The answer is a GenerateContentResponse-shaped mapping (``candidates``, ``usageMetadata``,
    optionally ``modelVersion``); the emulator adds ``createTime``, ``responseId`` and
    ``modelVersion`` when they are missing.

    It is called from several worker threads at once, so it must be thread-safe.

    Raises:
        RowError: to fail this row only (its output row carries the error in ``status``).
            Any other exception fails the row with 500 INTERNAL and is logged.
    """

    def respond(self, request: Mapping[str, Any], *, model: str) -> Mapping[str, Any]: ...


ResponderFactory = Callable[[], Responder]


def get_field(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A request field given in camelCase or snake_case (proto JSON accepts both)."""
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def as_list(value: Any) -> list[Any]:
    """A repeated field: Vertex also accepts a single object where a list is expected."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def iter_contents(request: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for content in as_list(request.get("contents")):
        if isinstance(content, Mapping):
            yield content


def iter_parts(content: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for part in as_list(content.get("parts")):
        if isinstance(part, Mapping):
            yield part


def estimate_tokens(text: str) -> int:
    """About four characters per token, as for Gemini's English text."""
    return math.ceil(len(text) / 4)


def prompt_usage(request: Mapping[str, Any]) -> tuple[int, int]:
    """``(text_tokens, media_tokens)`` of a request's prompt, system instruction included."""
    texts: list[str] = []
    media = 0
    contents = list(iter_contents(request))
    system = get_field(request, "systemInstruction", "system_instruction")
    if isinstance(system, Mapping):
        contents.append(system)
    for content in contents:
        for part in iter_parts(content):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
            if any(part.get(key) is not None for key in _MEDIA_KEYS):
                media += 1
    return sum(estimate_tokens(text) for text in texts), media * MEDIA_PART_TOKENS


def last_user_text(request: Mapping[str, Any]) -> str:
    """The text of the last turn that is not the model's (an unset role means the user)."""
    for content in reversed(list(iter_contents(request))):
        if content.get("role") in (None, "", "user"):
            return " ".join(
                text for part in iter_parts(content) if isinstance(text := part.get("text"), str)
            )
    return ""


def _stable_fraction(text: str) -> float:
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


class EchoResponder:
    """Answers ``echo: <start of the last user text>``, the same for the same request.

    Honours ``generationConfig.maxOutputTokens`` (the answer is cut and ends with MAX_TOKENS) and
    ``candidateCount``. Token counts follow the prompt's length (about four characters a token,
    258 a media part), so cost reports look plausible.
    """

    def __init__(self, *, echo_chars: int = 200, prefix: str = "echo: ") -> None:
        self._echo_chars = echo_chars
        self._prefix = prefix

    def respond(self, request: Mapping[str, Any], *, model: str) -> Mapping[str, Any]:
        text = last_user_text(request)
        answer = self._prefix + (text[: self._echo_chars] if text else "(no text in the prompt)")
        config = get_field(request, "generationConfig", "generation_config")
        config = config if isinstance(config, Mapping) else {}
        max_tokens = get_field(config, "maxOutputTokens", "max_output_tokens")
        count = get_field(config, "candidateCount", "candidate_count")
        count = count if isinstance(count, int) and 1 <= count <= 8 else 1

        candidates: list[dict[str, Any]] = []
        candidate_tokens = 0
        for index in range(count):
            candidate_text = answer if index == 0 else f"{answer} (candidate {index + 1})"
            finish_reason = "STOP"
            too_long = isinstance(max_tokens, int) and 0 < max_tokens < estimate_tokens(
                candidate_text
            )
            if too_long:
                candidate_text = candidate_text[: max_tokens * 4]
                finish_reason = "MAX_TOKENS"
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": candidate_text}]},
                "finishReason": finish_reason,
                "avgLogprobs": -round(0.02 + 0.5 * _stable_fraction(candidate_text), 6),
            }
            if index:  # proto3 JSON leaves out the default 0
                candidate["index"] = index
            candidates.append(candidate)
            candidate_tokens += estimate_tokens(candidate_text)

        text_tokens, media_tokens = prompt_usage(request)
        prompt_tokens = text_tokens + media_tokens
        prompt_details = [{"modality": "TEXT", "tokenCount": text_tokens}]
        if media_tokens:
            prompt_details.append({"modality": "IMAGE", "tokenCount": media_tokens})
        return {
            "candidates": candidates,
            "modelVersion": model,
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": candidate_tokens,
                "totalTokenCount": prompt_tokens + candidate_tokens,
                "trafficType": "ON_DEMAND",
                "promptTokensDetails": prompt_details,
                "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": candidate_tokens}],
            },
        }


def load_responder(spec: str) -> Responder:
    """Build the responder named by ``module:factory`` (a callable without arguments).

    Raises:
        ValueError: the spec is malformed or its module cannot be imported.
        TypeError: the factory is not callable or does not give a ``Responder``.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"--responder must look like 'package.module:factory', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import responder module {module_name!r}: {exc}") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TypeError(f"{spec!r}: {module_name} has no callable named {attribute!r}")
    responder = factory()
    if not isinstance(responder, Responder):
        raise TypeError(f"{spec!r} returned {type(responder).__name__}, which has no respond()")
    return responder
