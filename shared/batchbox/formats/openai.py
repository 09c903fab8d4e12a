"""OpenAI Batch API lines in, Gemini batch requests out; and Vertex AI results back out.

Input: each line of an OpenAI batch file is
``{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``.
:func:`convert_openai_line` turns one into ``{"custom_id": ..., "request": GenerateContentRequest}``
(other top-level keys are kept), or raises :class:`ConversionError` listing every part of the line
that has no Gemini equivalent, each with its JSON path in the OpenAI line (``body.messages[2]...``),
what was found, what is allowed and how to fix it. The result is then validated as any Gemini
line; ``FileValidator(input_format="openai")`` does both and reports errors of the converted
request at the OpenAI path they came from.

Output: :func:`to_openai_output` turns one Vertex AI prediction row into a line of the OpenAI
batch output format (``{"id", "custom_id", "response": {"status_code", "request_id", "body":
chat.completion}, "error"}``), for a results file people can read with their OpenAI tooling.

The conversion, field by field (the README's "What is checked" has the same table):

- ``messages``: ``system``/``developer`` (before the first user or assistant message) to
  ``systemInstruction``; ``user`` to ``user``; ``assistant`` to ``model``, its ``tool_calls`` to
  ``functionCall`` parts; ``tool`` messages to a ``user`` turn of ``functionResponse`` parts (the
  function's name found from ``tool_call_id``; a JSON-object content is the response, other text
  becomes ``{"output": text}``).
- content parts: ``text``; ``image_url`` (a ``data:`` URL to ``inlineData``, a ``gs://`` or
  http(s) URL to ``fileData`` with the MIME type its extension gives); ``input_audio`` to
  ``inlineData``; ``file`` with ``file_data`` (a ``data:`` URL) to ``inlineData``.
- ``max_tokens``/``max_completion_tokens`` to ``maxOutputTokens``; ``temperature``; ``top_p`` to
  ``topP``; ``stop`` to ``stopSequences``; ``n`` to ``candidateCount``; ``presence_penalty``,
  ``frequency_penalty``, ``seed``; ``logprobs``/``top_logprobs`` to ``responseLogprobs``/
  ``logprobs``.
- ``response_format``: ``json_object`` to ``responseMimeType`` ``application/json``;
  ``json_schema`` adds its schema as ``responseSchema`` when it fits Vertex AI's OpenAPI schema
  subset, else as ``responseJsonSchema``.
- ``tools`` (functions) to ``functionDeclarations`` (``parameters`` as for response schemas);
  ``tool_choice`` to ``toolConfig.functionCallingConfig``.
- Ignored, because they do not change the answer: ``model`` (the job's model runs), ``user``,
  ``metadata``, ``store``, ``service_tier``, ``stream: false``, ``parallel_tool_calls: true``,
  ``strict``, a schema's ``name``/``description``, an image's ``detail: "auto"``.
- Refused, with the reason: anything else, e.g. ``logit_bias``, ``stream: true``, audio output,
  ``file_id`` (OpenAI's Files), ``detail: "low"``/``"high"``, other endpoints than chat
  completions.
"""

from __future__ import annotations

import datetime as dt
import functools
import mimetypes
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

ID_KEY = "custom_id"
CHAT_URLS = ("/v1/chat/completions", "/chat/completions")
_LINE_KEYS = ("custom_id", "method", "url", "body")


@dataclass(frozen=True, slots=True)
class ConversionProblem:
    """What in an OpenAI line has no Gemini equivalent; ``path`` is a JSON path in that line."""

    path: str
    code: str
    found: str
    allowed: str
    fix: str


class ConversionError(ValueError):
    """An OpenAI line that cannot be converted; ``problems`` says every reason."""

    def __init__(self, problems: list[ConversionProblem]) -> None:
        super().__init__("; ".join(f"{p.path or 'line'}: {p.found}" for p in problems))
        self.problems = tuple(problems)


def looks_like_openai_line(record: object) -> bool:
    """Whether a parsed line is shaped like an OpenAI Batch API line (and not a Gemini one)."""
    return (
        type(record) is dict
        and "request" not in record
        and "body" in record
        and ("custom_id" in record or "url" in record or "method" in record)
    )


def convert_openai_line(record: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI Batch API line as a Gemini batch line: ``{"custom_id": ..., "request": ...}``.

    Top-level keys other than ``custom_id``, ``method``, ``url`` and ``body`` are kept as they
    are. Raises :class:`ConversionError` when anything in the line has no Gemini equivalent.
    """
    return convert_with_paths(record)[0]


def convert_with_paths(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`convert_openai_line`, plus where each part of the request came from: a map of
    Gemini paths (``request.contents[1].parts[0]``) to OpenAI paths (``body.messages[2]...``),
    used to report errors of the converted request where the user wrote them."""
    converter = _Converter()
    converted = converter.line(record)
    if converter.problems:
        raise ConversionError(converter.problems)
    return converted, converter.origins


def map_path(path: str, origins: dict[str, str]) -> str:
    """The OpenAI path of a Gemini path, from the longest known prefix (unchanged if none)."""
    probe = path
    while probe:
        origin = origins.get(probe)
        if origin is not None:
            return origin + path[len(probe) :]
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            break
        probe = probe[:cut]
    return path


# --- Input: OpenAI lines to Gemini requests -------------------------------------------------

_SIMPLE_PARAMS = {  # OpenAI body key -> generationConfig key
    "temperature": "temperature",
    "top_p": "topP",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
    "top_logprobs": "logprobs",
    "logprobs": "responseLogprobs",
}
# Keys that do not change the answer: accepted and dropped.
_IGNORED = frozenset({"model", "user", "metadata", "store", "service_tier", "stream_options"})
_REFUSED = {
    "logit_bias": "Gemini has no token bias; remove logit_bias",
    "modalities": "batchbox converts text answers only; remove modalities",
    "audio": "batchbox converts text answers only; remove audio",
    "prediction": "Gemini has no predicted outputs; remove prediction",
    "web_search_options": "add Gemini's googleSearch tool in a Gemini request instead",
    "reasoning_effort": "set generationConfig.thinkingConfig in a Gemini request instead",
    "functions": "write the functions as tools ({'type': 'function', 'function': {...}})",
    "function_call": "write it as tool_choice",
}
_FINISH = {"MAX_TOKENS": "length", "STOP": "stop"}
_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)(?:;[\w=.+-]+)*;base64,(.*)", re.DOTALL)
_NANOS = re.compile(r"(\.\d{6})\d+")
_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mp3"}


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:50] + "...")
    if isinstance(value, dict):
        return "an object" if value else "{}"
    if isinstance(value, list):
        return f"an array of {len(value)} items" if value else "[]"
    return "null" if value is None else orjson.dumps(value).decode()


class _Converter:
    def __init__(self) -> None:
        self.problems: list[ConversionProblem] = []
        self.origins: dict[str, str] = {}
        self.call_names: dict[str, str] = {}  # tool_call_id -> function name

    def refuse(self, path: str, code: str, found: str, allowed: str, fix: str) -> None:
        self.problems.append(ConversionProblem(path, code, found, allowed, fix))

    def origin(self, gemini: str, openai: str) -> None:
        self.origins[gemini] = openai

    # --- The line --------------------------------------------------------------------------

    def line(self, record: dict[str, Any]) -> dict[str, Any]:
        custom_id = record.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            self.refuse(
                "custom_id",
                "missing_custom_id" if custom_id is None else "invalid_custom_id",
                _describe(custom_id) if custom_id is not None else "no custom_id",
                "a non-empty string, unique in the file",
                "give every line a custom_id: results carry it to match them to requests",
            )
        method = record.get("method")
        if method != "POST":
            self.refuse(
                "method",
                "unsupported_method",
                _describe(method),
                "'POST'",
                'write "method": "POST"',
            )
        url = record.get("url")
        if url not in CHAT_URLS:
            self.refuse(
                "url",
                "unsupported_endpoint",
                _describe(url),
                "'/v1/chat/completions': batchbox converts chat completions to Gemini requests",
                "submit chat completion requests only (embeddings and the responses API have no "
                "Gemini generateContent equivalent)",
            )
        body = record.get("body")
        request: dict[str, Any] = {}
        if not isinstance(body, dict):
            self.refuse(
                "body",
                "wrong_type",
                _describe(body),
                "an object: the chat completion request",
                "write body as an object",
            )
        else:
            request = self.body(body)
        out: dict[str, Any] = {"custom_id": custom_id, "request": request}
        for key, value in record.items():
            if key not in _LINE_KEYS:
                out[key] = value
        self.origin("request", "body")
        self.origin("request.contents", "body.messages")
        self.origin("request.systemInstruction", "body.messages")
        self.origin("request.generationConfig", "body")
        self.origin("request.tools", "body.tools")
        return out

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {}
        config: dict[str, Any] = {}
        for key, value in body.items():
            path = f"body.{key}"
            if value is None or key in _IGNORED or key == "messages":
                continue
            if key in _SIMPLE_PARAMS:
                config[_SIMPLE_PARAMS[key]] = value
                self.origin(f"request.generationConfig.{_SIMPLE_PARAMS[key]}", path)
            elif key in ("max_tokens", "max_completion_tokens"):
                if "maxOutputTokens" in config and config["maxOutputTokens"] != value:
                    self.refuse(
                        path,
                        "conflicting_fields",
                        "both max_tokens and max_completion_tokens",
                        "one of them",
                        "keep max_completion_tokens only",
                    )
                config["maxOutputTokens"] = value
                self.origin("request.generationConfig.maxOutputTokens", path)
            elif key == "stop":
                config["stopSequences"] = [value] if isinstance(value, str) else value
                self.origin("request.generationConfig.stopSequences", path)
            elif key == "response_format":
                self.response_format(value, config)
            elif key == "tools":
                tools = self.tools(value)
                if tools:
                    request["tools"] = tools
            elif key == "tool_choice":
                choice = self.tool_choice(value)
                if choice:
                    request["toolConfig"] = {"functionCallingConfig": choice}
                    self.origin("request.toolConfig", path)
            elif key == "stream":
                if value is not False:
                    self.refuse(
                        path,
                        "no_gemini_equivalent",
                        _describe(value),
                        "false, or no stream key",
                        "remove stream: batch answers are not streamed",
                    )
            elif key == "parallel_tool_calls":
                if value is not True:
                    self.refuse(
                        path,
                        "no_gemini_equivalent",
                        _describe(value),
                        "true, or no parallel_tool_calls key",
                        "remove parallel_tool_calls: Gemini decides how many functions to call "
                        "in a turn",
                    )
            elif key in _REFUSED:
                self.refuse(
                    path,
                    "no_gemini_equivalent",
                    repr(key),
                    "chat completion parameters that have a Gemini equivalent",
                    _REFUSED[key],
                )
            else:
                self.refuse(
                    path,
                    "unknown_field",
                    repr(key),
                    "chat completion parameters batchbox converts (see the README)",
                    f"remove {key!r}",
                )
        messages = body.get("messages")
        system, contents = self.messages(messages)
        if contents:
            request["contents"] = contents
        if system:
            request["systemInstruction"] = {"parts": system}
        if config:
            request["generationConfig"] = config
        return request

    # --- Messages --------------------------------------------------------------------------

    def messages(self, messages: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        if not isinstance(messages, list) or not messages:
            self.refuse(
                "body.messages",
                "missing_messages" if messages is None else "wrong_type",
                _describe(messages) if messages is not None else "no messages",
                "a non-empty array of messages",
                'add "messages": [{"role": "user", "content": "..."}]',
            )
            return system, contents
        tool_turn = False  # the last turn holds only tool results, so more may join it
        for index, message in enumerate(messages):
            path = f"body.messages[{index}]"
            if not isinstance(message, dict):
                self.refuse(
                    path,
                    "wrong_type",
                    _describe(message),
                    "a message object",
                    'write {"role": "user", "content": "..."}',
                )
                continue
            role = message.get("role")
            self.message_keys(message, path, role)
            if role in ("system", "developer"):
                if contents:
                    self.refuse(
                        f"{path}.role",
                        "late_system_message",
                        repr(role),
                        "system messages before the first user or assistant message",
                        "move this message to the start: Gemini has one system instruction "
                        "per request",
                    )
                    continue
                start = len(system)
                parts = self.content(message.get("content"), f"{path}.content", text_only=True)
                for offset in range(len(parts)):
                    self.origin(
                        f"request.systemInstruction.parts[{start + offset}]", f"{path}.content"
                    )
                system.extend(parts)
                tool_turn = False
            elif role in ("user", "assistant"):
                turn_index = len(contents)
                gemini = f"request.contents[{turn_index}]"
                parts = self.content(
                    message.get("content"),
                    f"{path}.content",
                    optional=role == "assistant",
                    base=f"{gemini}.parts",
                )
                if role == "assistant":
                    parts += self.tool_calls(message, path, f"{gemini}.parts", len(parts))
                if not parts:
                    self.refuse(
                        path,
                        "empty_message",
                        "a message without content",
                        "a message with content (or, from the assistant, tool_calls)",
                        "give the message content or remove it",
                    )
                    continue
                contents.append({"role": "user" if role == "user" else "model", "parts": parts})
                self.origin(gemini, path)
                tool_turn = False
            elif role in ("tool", "function"):
                part = self.tool_result(message, path, role)
                if part is None:
                    continue
                if not tool_turn:
                    contents.append({"role": "user", "parts": []})
                    self.origin(f"request.contents[{len(contents) - 1}]", path)
                turn = contents[-1]
                self.origin(
                    f"request.contents[{len(contents) - 1}].parts[{len(turn['parts'])}]", path
                )
                turn["parts"].append(part)
                tool_turn = True
            else:
                self.refuse(
                    f"{path}.role",
                    "invalid_role",
                    _describe(role),
                    "'system', 'developer', 'user', 'assistant' or 'tool'",
                    "use one of the chat completion roles",
                )
        if not contents and not self.problems:
            self.refuse(
                "body.messages",
                "no_user_message",
                "only system messages",
                "at least one user message",
                "add the user's message",
            )
        return system, contents

    def message_keys(self, message: dict[str, Any], path: str, role: object) -> None:
        allowed = {"role", "content"}
        if role == "assistant":
            allowed |= {"tool_calls", "function_call", "refusal"}
        elif role == "tool":
            allowed.add("tool_call_id")
        elif role == "function":
            allowed.add("name")
        for key, value in message.items():
            if key in allowed or value is None:
                continue
            if key == "name":
                fix = (
                    "remove name, or write the speaker's name into the text: Gemini turns have "
                    "no participant names"
                )
            elif key == "audio":
                fix = "remove audio: batchbox converts text conversations only"
            else:
                fix = f"remove {key!r}"
            self.refuse(
                f"{path}.{key}",
                "no_gemini_equivalent",
                repr(key),
                f"the keys of a chat completion {role} message that Gemini has: "
                + ", ".join(sorted(allowed)),
                fix,
            )

    def content(
        self,
        content: object,
        path: str,
        *,
        text_only: bool = False,
        optional: bool = False,
        base: str = "",
    ) -> list[dict[str, Any]]:
        if isinstance(content, str):
            if base:
                self.origin(f"{base}[0]", path)
                self.origin(f"{base}[0].text", path)
            return [{"text": content}]
        if content is None and optional:
            return []
        if not isinstance(content, list):
            self.refuse(
                path,
                "wrong_type",
                _describe(content),
                "a string or an array of content parts",
                'write the text as a string, or parts like [{"type": "text", "text": "..."}]',
            )
            return []
        parts: list[dict[str, Any]] = []
        for index, item in enumerate(content):
            item_path = f"{path}[{index}]"
            part = self.content_part(item, item_path, text_only=text_only)
            if part is not None:
                if base:
                    self.origin(f"{base}[{len(parts)}]", item_path)
                parts.append(part)
        return parts

    def content_part(self, item: object, path: str, *, text_only: bool) -> dict[str, Any] | None:
        if not isinstance(item, dict):
            self.refuse(
                path,
                "wrong_type",
                _describe(item),
                "a content part object",
                'write {"type": "text", "text": "..."}',
            )
            return None
        kind = item.get("type")
        if kind == "text":
            return {"text": item.get("text")}
        if text_only:
            self.refuse(
                f"{path}.type",
                "no_gemini_equivalent",
                _describe(kind),
                "text parts in a system message",
                "move images, audio and files to a user message",
            )
            return None
        if kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail") if isinstance(image, dict) else None
            if detail not in (None, "auto"):
                self.refuse(
                    f"{path}.image_url.detail",
                    "no_gemini_equivalent",
                    repr(detail),
                    "'auto', or no detail",
                    "remove detail: Gemini sets image resolution per request "
                    "(generationConfig.mediaResolution), not per image",
                )
                return None
            return self.media(url, f"{path}.image_url.url", "image")
        if kind == "input_audio":
            audio = item.get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            audio_format = audio.get("format") if isinstance(audio, dict) else None
            mime = _AUDIO_FORMATS.get(str(audio_format))
            if not isinstance(data, str) or mime is None:
                self.refuse(
                    f"{path}.input_audio",
                    "invalid_audio",
                    _describe(audio),
                    "an object with base64 data and a format of 'wav' or 'mp3'",
                    'write the audio as {"data": BASE64, "format": "wav"}',
                )
                return None
            return {"inlineData": {"mimeType": mime, "data": data}}
        if kind == "file":
            file = item.get("file")
            if isinstance(file, dict) and file.get("file_id") is not None:
                self.refuse(
                    f"{path}.file.file_id",
                    "no_gemini_equivalent",
                    _describe(file.get("file_id")),
                    "file_data: the file's content as a data: URL",
                    "Vertex AI cannot read OpenAI's Files: send the file inline as file_data "
                    "(a data: URL), or write a Gemini request with its Cloud Storage URI",
                )
                return None
            data = file.get("file_data") if isinstance(file, dict) else None
            return self.media(data, f"{path}.file.file_data", "file")
        self.refuse(
            f"{path}.type",
            "no_gemini_equivalent",
            _describe(kind),
            "'text', 'image_url', 'input_audio' or 'file'",
            "remove this part: it has no Gemini equivalent",
        )
        return None

    def media(self, url: object, path: str, what: str) -> dict[str, Any] | None:
        if not isinstance(url, str) or not url:
            self.refuse(
                path,
                "wrong_type",
                _describe(url),
                "a data: URL, a gs:// URI or an http(s) URL",
                f"give the {what} as a URL",
            )
            return None
        match = _DATA_URL.fullmatch(url)
        if match is not None:
            return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}
        if url.startswith(("gs://", "http://", "https://")):
            mime = mimetypes.guess_type(urllib.parse.urlsplit(url).path)[0]
            if mime is None:
                self.refuse(
                    path,
                    "unknown_mime_type",
                    _describe(url),
                    "a URL whose name ends in a known extension (.png, .jpg, .pdf...)",
                    "Gemini needs each file's MIME type: use a URL ending in its extension, or "
                    "a data: URL",
                )
                return None
            return {"fileData": {"mimeType": mime, "fileUri": url}}
        self.refuse(
            path,
            "invalid_url",
            _describe(url),
            "a data:MIME;base64,... URL, a gs:// URI or an http(s) URL",
            "write the file as a base64 data: URL, or upload it to Cloud Storage and use its "
            "gs:// URI",
        )
        return None

    # --- Function calling ------------------------------------------------------------------

    def tool_calls(
        self, message: dict[str, Any], path: str, base: str, start: int
    ) -> list[dict[str, Any]]:
        calls = message.get("tool_calls")
        legacy = message.get("function_call")
        items: list[tuple[str, Any]] = []
        if isinstance(calls, list):
            items = [(f"{path}.tool_calls[{i}]", call) for i, call in enumerate(calls)]
        elif calls is not None:
            self.refuse(
                f"{path}.tool_calls",
                "wrong_type",
                _describe(calls),
                "an array of tool calls",
                "write tool_calls as an array",
            )
        if legacy is not None:
            items.append((f"{path}.function_call", {"type": "function", "function": legacy}))
        parts: list[dict[str, Any]] = []
        for call_path, call in items:
            function = call.get("function") if isinstance(call, dict) else None
            if (
                not isinstance(call, dict)
                or call.get("type", "function") != "function"
                or not isinstance(function, dict)
            ):
                self.refuse(
                    call_path,
                    "no_gemini_equivalent",
                    _describe(call),
                    "a function tool call",
                    "only function calls convert to Gemini",
                )
                continue
            name = function.get("name")
            args = self.arguments(function.get("arguments"), f"{call_path}.function.arguments")
            if args is None:
                continue
            if isinstance(call.get("id"), str) and isinstance(name, str):
                self.call_names[call["id"]] = name
            part: dict[str, Any] = {"functionCall": {"name": name}}
            if args:
                part["functionCall"]["args"] = args
            self.origin(f"{base}[{start + len(parts)}]", call_path)
            parts.append(part)
        return parts

    def arguments(self, arguments: object, path: str) -> dict[str, Any] | None:
        if arguments is None or arguments == "":
            return {}
        if isinstance(arguments, str):
            try:
                value = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                return value
        self.refuse(
            path,
            "invalid_arguments",
            _describe(arguments),
            "a JSON object encoded as a string, as the chat completion API returns it",
            "write arguments as json.dumps of an object of argument values",
        )
        return None

    def tool_result(self, message: dict[str, Any], path: str, role: str) -> dict[str, Any] | None:
        if role == "function":
            name = message.get("name")
        else:
            call_id = message.get("tool_call_id")
            name = self.call_names.get(call_id) if isinstance(call_id, str) else None
            if name is None:
                self.refuse(
                    f"{path}.tool_call_id",
                    "unknown_tool_call",
                    _describe(call_id),
                    "the id of a tool call of an earlier assistant message",
                    "Gemini matches function results by name: keep the assistant message whose "
                    "tool_calls has this id",
                )
                return None
        content = message.get("content")
        if isinstance(content, list):
            texts: list[str] = [
                item["text"]
                for item in content
                if isinstance(item, dict)
                and item.get("type") == "text"
                and isinstance(item.get("text"), str)
            ]
            if len(texts) != len(content):
                self.refuse(
                    f"{path}.content",
                    "no_gemini_equivalent",
                    _describe(content),
                    "text, or text parts",
                    "send tool results as text",
                )
                return None
            content = "".join(texts)
        if not isinstance(content, str):
            self.refuse(
                f"{path}.content",
                "wrong_type",
                _describe(content),
                "the function's result as text",
                "write the result as a string (JSON text for structured results)",
            )
            return None
        response: Any = None
        if content.lstrip().startswith("{"):
            try:
                response = orjson.loads(content)
            except orjson.JSONDecodeError:
                response = None
        if not isinstance(response, dict) or not response:
            response = {"output": content}
        return {"functionResponse": {"name": name, "response": response}}

    def tools(self, tools: object) -> list[dict[str, Any]]:
        if not isinstance(tools, list):
            self.refuse(
                "body.tools",
                "wrong_type",
                _describe(tools),
                "an array of tools",
                "write tools as an array",
            )
            return []
        declarations: list[dict[str, Any]] = []
        for index, tool in enumerate(tools):
            path = f"body.tools[{index}]"
            function = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(function, dict)
            ):
                self.refuse(
                    path,
                    "no_gemini_equivalent",
                    _describe(tool.get("type") if isinstance(tool, dict) else tool),
                    "function tools",
                    "only function tools convert to Gemini",
                )
                continue
            declaration: dict[str, Any] = {"name": function.get("name")}
            gemini = f"request.tools[0].functionDeclarations[{len(declarations)}]"
            self.origin(gemini, f"{path}.function")
            if function.get("description") is not None:
                declaration["description"] = function["description"]
            parameters = function.get("parameters")
            if parameters is not None:
                key = "parameters" if _fits_openapi(parameters) else "parametersJsonSchema"
                declaration[key] = parameters
                self.origin(f"{gemini}.{key}", f"{path}.function.parameters")
            declarations.append(declaration)
        return [{"functionDeclarations": declarations}] if declarations else []

    def tool_choice(self, choice: object) -> dict[str, Any] | None:
        path = "body.tool_choice"
        modes = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
        if isinstance(choice, str) and choice in modes:
            return {"mode": modes[choice]}
        if isinstance(choice, dict) and choice.get("type") == "function":
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if isinstance(name, str) and name:
                return {"mode": "ANY", "allowedFunctionNames": [name]}
        self.refuse(
            path,
            "no_gemini_equivalent",
            _describe(choice),
            "'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}",
            "use one of the tool choices Gemini has",
        )
        return None

    # --- Structured output -----------------------------------------------------------------

    def response_format(self, value: object, config: dict[str, Any]) -> None:
        path = "body.response_format"
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "text":
            return
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
            self.origin("request.generationConfig.responseMimeType", path)
            return
        if kind == "json_schema" and isinstance(value, dict):
            spec = value.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                self.refuse(
                    f"{path}.json_schema.schema",
                    "missing_schema",
                    _describe(schema),
                    "a JSON Schema object",
                    "give json_schema a schema",
                )
                return
            key = "responseSchema" if _fits_openapi(schema) else "responseJsonSchema"
            config["responseMimeType"] = "application/json"
            config[key] = schema
            self.origin("request.generationConfig.responseMimeType", path)
            self.origin(f"request.generationConfig.{key}", f"{path}.json_schema.schema")
            return
        self.refuse(
            path,
            "no_gemini_equivalent",
            _describe(kind if kind is not None else value),
            "type 'text', 'json_object' or 'json_schema'",
            "use one of the response formats Gemini has",
        )


@functools.cache
def _schema_keys() -> frozenset[str]:
    """Both spellings of the fields of Vertex AI's Schema (imported late: the validation
    package imports this module)."""
    from batchbox.validation.schema import SPECS

    return frozenset(SPECS["Schema"].fields)


def _fits_openapi(schema: object) -> bool:
    """Whether a JSON Schema uses only what Vertex AI's OpenAPI Schema object has."""
    if not isinstance(schema, dict):
        return False
    keys = _schema_keys()
    for key, value in schema.items():
        if key not in keys:
            return False
        if key == "type" and not isinstance(value, str):
            return False
        if key == "enum" and not all(isinstance(item, str) for item in value or ()):
            return False
        if key == "items" and not _fits_openapi(value):
            return False
        if key == "properties" and not (
            isinstance(value, dict) and all(_fits_openapi(sub) for sub in value.values())
        ):
            return False
        if key == "anyOf" and not (
            isinstance(value, list) and all(_fits_openapi(sub) for sub in value)
        ):
            return False
        if key in ("defs", "ref", "additional_properties") or (
            key == "additionalProperties" and not isinstance(value, bool)
        ):
            return False
    return True


# --- Output: Vertex AI prediction rows to the OpenAI batch output format --------------------


def to_openai_output(custom_id: str | None, row: dict[str, Any]) -> dict[str, Any]:
    """One Vertex AI prediction row (``{"request", "response", "status", ...}``) as a line of the
    OpenAI batch output format, for the request whose ``custom_id`` is given.

    A row with an error ``status`` or no response gives ``"response": null`` and an ``error``;
    otherwise ``response.body`` is a ``chat.completion`` with one choice per candidate.
    """
    status = row.get("status")
    response = row.get("response")
    if status or not isinstance(response, dict):
        return {
            "id": f"batch_req_{custom_id}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "vertex_error", "message": str(status or "no response")},
        }
    request_id = str(response.get("responseId") or "")
    choices = [
        _choice(candidate, index)
        for index, candidate in enumerate(response.get("candidates") or [])
        if isinstance(candidate, dict)
    ]
    usage = response.get("usageMetadata") or {}
    prompt = _int(usage.get("promptTokenCount"))
    thoughts = _int(usage.get("thoughtsTokenCount"))
    completion = _int(usage.get("candidatesTokenCount")) + thoughts
    body = {
        "id": request_id or f"chatcmpl-{custom_id}",
        "object": "chat.completion",
        "created": _created(response.get("createTime")),
        "model": response.get("modelVersion"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": _int(usage.get("totalTokenCount")) or prompt + completion,
            "prompt_tokens_details": {"cached_tokens": _int(usage.get("cachedContentTokenCount"))},
            "completion_tokens_details": {"reasoning_tokens": thoughts},
        },
    }
    return {
        "id": f"batch_req_{request_id or custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def _choice(candidate: dict[str, Any], index: int) -> dict[str, Any]:
    parts = (candidate.get("content") or {}).get("parts") or []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            calls.append(
                {
                    "id": str(call.get("id") or f"call_{index}_{len(calls)}"),
                    "type": "function",
                    "function": {
                        "name": call.get("name"),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    finish = candidate.get("finishReason")
    if finish in _FILTERED:
        reason = "content_filter"
    elif calls and finish in (None, "STOP"):
        reason = "tool_calls"
    else:
        reason = _FINISH.get(str(finish), "stop")
    return {
        "index": _int(candidate.get("index")) if candidate.get("index") is not None else index,
        "message": message,
        "logprobs": None,
        "finish_reason": reason,
    }


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return 0


def _created(value: object) -> int:
    """Seconds since the epoch of an RFC 3339 time (0 when absent or unreadable)."""
    if not isinstance(value, str):
        return 0
    text = _NANOS.sub(r"\1", value.replace("Z", "+00:00"))  # Python reads microseconds
    try:
        return int(dt.datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0
