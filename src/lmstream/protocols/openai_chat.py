"""OpenAI Chat Completions, both ways: a request body -> processor arguments, and lmstream events
-> `chat.completion.chunk` objects (streaming) or one `chat.completion` (not). Pure: no I/O.

Why each rule:
- A stream ends with a chunk whose `finish_reason` is the model's own (`stop`, `length`,
  `tool_calls`, `content_filter`; any other reason goes out as it is, never as `stop`), or with a
  `{"error": {...}}` chunk, which the official SDKs raise. `[DONE]` follows only a real finish.
- Thinking goes out as `reasoning_content` deltas, the field llama-server, vLLM and DeepSeek use.
- Tool calls are the client's to run only when the client sent `tools`: then each call streams as
  `tool_calls` deltas (id and name first, then argument fragments) and the answer stops there.
  Tools the operator configured run on the server and stay invisible, as a plain model would.
- Cost and cache status travel in the final chunk's `lmstream` field (standard clients ignore
  unknown fields), so nothing a client already parses changes.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import AttachmentError, ConfigurationError
from ..events import EventType
from ..processor import LMRequestProcessor
from ..prompt import Content, Message
from ..types import Attachment, ToolCall, ToolResult

__all__ = [
    "FINISH_REASONS",
    "ChatCompletionChunks",
    "ChatCompletionRequest",
    "ChatCompletionResult",
    "OpenAIError",
    "error_body",
    "extension",
    "failure",
    "finish_reason",
    "openai_usage",
    "parse_chat_completion",
    "parse_tools",
    "processor_for",
    "prompt_arguments",
    "release",
    "tool_settings",
]

#: lmstream's finish reasons that Chat Completions names the same way
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})

Chunk = dict[str, Any]

#: sampling fields a client may send, as Chat Completions names them -> lmstream's names
_SAMPLING = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
}
#: fields read and accepted, with nothing to do (defaults, or hints no provider needs here)
_IGNORED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "user",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "store",
        "metadata",
        "logprobs",
        "frequency_penalty",
        "presence_penalty",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)


class OpenAIError(ValueError):
    """A client error in OpenAI's terms: `status`, `type`, `param` (the field) and `code`."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.type = type_

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`: what every OpenAI SDK parses."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _bad(param: str, message: str) -> OpenAIError:
    return OpenAIError(f"{param}: {message}", param=param)


@dataclass(slots=True)
class ChatCompletionRequest:
    """A checked Chat Completions body. `messages` is the whole conversation in lmstream's terms;
    `sampling` uses lmstream's names and still has to pass the server's policy."""

    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    response_schema: dict[str, Any] | None = None
    user: str | None = None


def _text_parts(content: Any, where: str, allow_files: bool) -> list[Content]:
    """A message's `content`: a string, or parts (`text`, and for users `image_url`/`file` as
    `data:` URLs; the server fetches nothing)."""
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise _bad(where, "must be a string or an array of content parts")
    out: list[Content] = []
    for j, part in enumerate(content):
        pw = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise _bad(pw, "must be a content part object")
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{pw}.text", "must be a string")
            out.append(text)
        elif kind == "refusal":
            continue
        elif allow_files and kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad(f"{pw}.image_url.url", "must be a string")
            out.append(data_url_attachment(url, f"{pw}.image_url.url"))
        elif allow_files and kind == "file":
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, dict) else None
            if not isinstance(data, str):
                raise _bad(f"{pw}.file.file_data", "must be a data: URL (file ids are not kept here)")
            name = file.get("filename") if isinstance(file, dict) else None
            out.append(data_url_attachment(data, f"{pw}.file.file_data", name if isinstance(name, str) else None))
        else:
            raise _bad(f"{pw}.type", f"content parts of type {str(kind)[:40]!r} are not supported here")
    return out


def data_url_attachment(url: str, where: str, filename: str | None = None) -> Attachment:
    """An `Attachment` from a base64 `data:` URL (only those: the server fetches nothing)."""
    if not url.startswith("data:") or "," not in url:
        raise _bad(where, "only base64 data: URLs are accepted (the server fetches nothing)")
    head, _, payload = url[5:].partition(",")
    media, _, enc = head.partition(";")
    if enc != "base64":
        raise _bad(where, "data: URLs must be base64")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "invalid base64") from None
    try:
        return Attachment(data, media, filename)
    except AttachmentError as exc:  # the bytes are no type lmstream carries, whatever the label
        raise OpenAIError(f"{where}: {exc}", status=415, param=where, code="unsupported_file_type") from None


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON text) as the dict lmstream keeps."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise _bad(where, "must be a JSON string")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise _bad(where, "is not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad(where, "must be a JSON object")
    return value


def parse_messages(raw: Any, max_messages: int) -> list[Message]:
    """Chat Completions `messages` -> lmstream messages (tool results grouped per turn)."""
    if not isinstance(raw, list) or not raw:
        raise _bad("messages", "must be a non-empty array")
    if len(raw) > max_messages:
        raise _bad("messages", f"too many messages ({len(raw)}; at most {max_messages})")
    out: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> the function's name (tool messages carry only the id)
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(where, "must be an object")
        role = m.get("role")
        if role in ("system", "developer"):
            out.append(Message("system", _text_parts(m.get("content"), f"{where}.content", False)))
        elif role == "user":
            contents = _text_parts(m.get("content"), f"{where}.content", True)
            if not contents:
                raise _bad(f"{where}.content", "must not be empty")
            out.append(Message("user", contents))
        elif role == "assistant":
            said: list[Content] = []
            if m.get("content") is not None:
                said.extend(_text_parts(m.get("content"), f"{where}.content", False))
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                raise _bad(f"{where}.tool_calls", "must be an array")
            for j, c in enumerate(calls):
                cw = f"{where}.tool_calls[{j}]"
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(c.get("id"), str) or not isinstance(fn.get("name"), str):
                    raise _bad(cw, "must be {id, type: 'function', function: {name, arguments}}")
                names[c["id"]] = fn["name"]
                said.append(
                    ToolCall(c["id"], fn["name"], _arguments(fn.get("arguments", ""), f"{cw}.function.arguments"))
                )
            if said:
                out.append(Message("assistant", said))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _bad(f"{where}.tool_call_id", "must be the id of the assistant's tool call")
            if call_id not in names:
                raise _bad(f"{where}.tool_call_id", "answers no tool call of an earlier assistant message")
            text = "".join(p for p in _text_parts(m.get("content"), f"{where}.content", False) if isinstance(p, str))
            result = ToolResult(call_id, names[call_id], text)
            if out and out[-1].role == "tool":
                out[-1].contents.append(result)
            else:
                out.append(Message.tool(result))
        else:
            raise _bad(f"{where}.role", "must be one of system, developer, user, assistant, tool")
    return out


def parse_tools(raw: Any, where: str = "tools", *, flat: bool = False) -> list[dict[str, Any]]:
    """Client tools -> lmstream tool dicts `{"name", "description", "parameters"}`. Chat
    Completions nests the function (`{"type": "function", "function": {...}}`); the Responses
    API does not (`flat`)."""
    if not isinstance(raw, list):
        raise _bad(where, "must be an array")
    out: list[dict[str, Any]] = []
    for i, t in enumerate(raw):
        tw = f"{where}[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function":
            raise _bad(tw, "only tools of type 'function' are supported")
        fn = t if flat else t.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(tw, "needs a function name")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise _bad(f"{tw}.parameters", "must be a JSON schema object")
        desc = fn.get("description") or ""
        if not isinstance(desc, str):
            raise _bad(f"{tw}.description", "must be a string")
        out.append({"name": fn["name"], "description": desc, "parameters": params})
    return out


def _response_format(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad("response_format", "must be an object")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema", "must be a JSON schema object")
        return schema
    raise _bad("response_format.type", "must be text, json_object or json_schema")


def parse_chat_completion(body: Any, max_messages: int = 500) -> ChatCompletionRequest:
    """Check a `POST /v1/chat/completions` body; every error names its field (`param`)."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "must be the name of a served model (GET /v1/models lists them)")
    n = body.get("n", 1)
    if n is not None and n != 1:
        raise _bad("n", "only n=1 is supported (send one request per choice)")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "must be true or false")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options", "must be an object")
    include_usage = bool((options or {}).get("include_usage", False))
    for key in body:
        if key not in _SAMPLING and key not in _IGNORED:
            raise _bad(str(key)[:40], "not a field this server accepts")
    for key in ("logprobs",):
        if body.get(key):
            raise _bad(key, "is not supported")
    for key in ("frequency_penalty", "presence_penalty"):
        if body.get(key) not in (None, 0, 0.0):
            raise _bad(key, "is not supported (send 0 or leave it out)")
    if "max_tokens" in body and "max_completion_tokens" in body and body["max_tokens"] is not None:
        if body["max_completion_tokens"] is not None and body["max_tokens"] != body["max_completion_tokens"]:
            raise _bad("max_completion_tokens", "differs from max_tokens; send one of them")
    sampling = {_SAMPLING[k]: v for k, v in body.items() if k in _SAMPLING and v is not None}
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "must be a string")
    tools = parse_tools(body["tools"]) if body.get("tools") else []
    choice = body.get("tool_choice")
    if choice is not None and not (choice in ("none", "auto", "required") or isinstance(choice, dict)):
        raise _bad("tool_choice", "must be none, auto, required or {type: 'function', function: {name}}")
    return ChatCompletionRequest(
        model=model,
        messages=parse_messages(body.get("messages"), max_messages),
        stream=bool(stream),
        include_usage=include_usage,
        sampling=sampling,
        tools=tools,
        tool_choice=choice,
        response_schema=_response_format(body.get("response_format")),
        user=user,
    )


# ---------------------------------------------------------------------------- events -> wire


def finish_reason(reason: str | None) -> str:
    """The model's own reason; lmstream's `tool_approval` (the answer stopped at calls) is
    `tool_calls`. A reason Chat Completions does not name goes out unchanged, never as `stop`."""
    if reason == "tool_approval":
        return "tool_calls"
    return reason if reason else "stop"


def openai_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """lmstream's usage -> Chat Completions' `usage` (a count the provider did not report is null)."""
    u = usage or {}
    prompt, completion = u.get("input_tokens"), u.get("output_tokens")
    total = prompt + completion if isinstance(prompt, int) and isinstance(completion, int) else None
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    if u.get("cached_tokens") is not None:
        out["prompt_tokens_details"] = {"cached_tokens": u["cached_tokens"]}
    if u.get("reasoning_tokens") is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": u["reasoning_tokens"]}
    return out


def extension(meta: dict[str, Any], value: Any = None) -> dict[str, Any]:
    """The `lmstream` field of the final chunk: cost (USD, null when unknown), cache status (null
    without a response cache), timings, and the attempts a fallback chain made. `meta` is the
    `done` event's metadata, `value` its value (where `cache` and `attempts` travel)."""
    usage = meta.get("usage") or {}
    cost = usage.get("cost")
    total = cost.get("total") if isinstance(cost, dict) else cost
    extra = value if isinstance(value, dict) else {}
    out: dict[str, Any] = {
        "cost": total,
        "cache": extra.get("cache"),
        "duration": meta.get("duration"),
        "time_to_first_token": meta.get("time_to_first_token"),
    }
    if extra.get("attempts") is not None:
        out["attempts"] = extra["attempts"]
    return out


def failure(meta: dict[str, Any]) -> tuple[str, str, str | None]:
    """(message, type, code) for a failed answer: the kind of failure, no upstream text (it can
    hold an internal address or a key; the server log has it)."""
    kind = str(meta.get("error_type") or "Error")
    kind = kind if kind.isidentifier() else "Error"
    status = meta.get("status_code")
    if kind == "RateLimitError" or status == 429:
        return f"the upstream model is rate limited ({kind}); retry shortly", "rate_limit_error", "rate_limited"
    if kind == "CancelledError":
        return "the answer was cancelled", "server_error", "cancelled"
    return f"the answer failed ({kind}); the server log has the details", "server_error", "upstream_error"


def restart_failure(value: dict[str, Any]) -> tuple[str, str, str]:
    """(message, type, code) for a fallback that restarted the answer (a `reset` that discards
    text): an OpenAI stream cannot take back what it sent, so the stream ends as failed rather
    than hand the client the partial answer and the new one run together."""
    return (
        f"{value.get('from')} failed mid-answer and {value.get('to')} restarted it; an OpenAI stream cannot take "
        "back the partial answer (serve with --on-midstream-failure continue to have the fallback continue it)",
        "server_error",
        "fallback_restarted",
    )


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletionChunks:
    """One answer's events -> `chat.completion.chunk` dicts, in order.

    `start()` gives the role chunk; `feed(type, value, metadata)` the chunks for one event;
    `error(...)` the error chunk of a failed answer. After the final chunk `closed` is true."""

    __slots__ = ("_base", "_calls", "_include_usage", "_usage_null", "client_tools", "closed", "finished")

    def __init__(
        self,
        model: str,
        *,
        id: str | None = None,
        created: int | None = None,
        include_usage: bool = False,
        client_tools: bool = False,
    ) -> None:
        self._base = {
            "id": id or completion_id(),
            "object": "chat.completion.chunk",
            "created": created if created is not None else int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self._include_usage = include_usage
        self._usage_null = {"usage": None} if include_usage else {}
        self._calls: dict[Any, int] = {}  # block_id -> tool_calls index
        self.client_tools = client_tools
        self.closed = False
        self.finished = False  # a real finish: only then may `[DONE]` follow

    def _chunk(self, delta: dict[str, Any], reason: str | None = None) -> Chunk:
        return {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
            **self._usage_null,
        }

    def start(self) -> Chunk:
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, type_: str, value: Any, meta: dict[str, Any]) -> list[Chunk]:
        if self.closed:
            return []
        if type_ == EventType.RESPONSE:
            return [self._chunk({"content": value})] if value else []
        if type_ == EventType.THINKING:
            return [self._chunk({"reasoning_content": value})] if value else []
        if type_ == EventType.TOOL_CALL_START and self.client_tools:
            index = self._calls.setdefault(meta.get("block_id"), len(self._calls))
            call = {
                "index": index,
                "id": str(value.get("id")),
                "type": "function",
                "function": {"name": str(value.get("name")), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if type_ == EventType.TOOL_CALL_DELTA and self.client_tools:
            at = self._calls.get(meta.get("block_id"))
            if at is None or not value:
                return []
            return [self._chunk({"tool_calls": [{"index": at, "function": {"arguments": value}}]})]
        if type_ == EventType.TOOL_CALL and self.client_tools and meta.get("block_id") not in self._calls:
            # a provider that gives whole calls only: one delta with everything
            index = self._calls.setdefault(meta.get("block_id"), len(self._calls))
            call = {
                "index": index,
                "id": str(value.get("id")),
                "type": "function",
                "function": {"name": str(value.get("name")), "arguments": json.dumps(value.get("arguments", {}))},
            }
            return [self._chunk({"tool_calls": [call]})]
        if type_ == EventType.DONE:
            self.closed = self.finished = True
            last = self._chunk({}, finish_reason(meta.get("finish_reason")))
            out = [last]
            if self._include_usage:
                out.append({**self._base, "choices": [], "usage": openai_usage(meta.get("usage"))})
            out[-1]["lmstream"] = extension(meta, value)
            return out
        if type_ == EventType.ERROR:
            return [self.error(*failure(meta))]
        if type_ == EventType.RESET and value.get("discarded"):
            return [self.error(*restart_failure(value))]
        return []  # a reset that discards nothing: the fallback continues the same text

    def error(self, message: str, type_: str = "server_error", code: str | None = None) -> Chunk:
        """The chunk that ends a failed stream (the SDKs raise it as an `APIError`)."""
        self.closed = True
        return error_body(message, type_, None, code)


@dataclass(slots=True)
class ChatCompletionResult:
    """Folds one answer's events into a non-streaming `chat.completion`."""

    model: str
    client_tools: bool = False
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    done_value: Any = None

    def feed(self, type_: str, value: Any, meta: dict[str, Any]) -> None:
        if type_ == EventType.RESPONSE:
            self.text.append(value)
        elif type_ == EventType.RESET and value.get("discarded"):  # a fallback restarted: the partial is void
            kept = "".join(self.text)
            self.text = [kept[: max(0, len(kept) - int(value["discarded"]))]]
            self.calls = []
        elif type_ == EventType.THINKING:
            self.reasoning.append(value)
        elif type_ == EventType.TOOL_CALL and self.client_tools:
            self.calls.append(
                {
                    "id": str(value.get("id")),
                    "type": "function",
                    "function": {"name": str(value.get("name")), "arguments": json.dumps(value.get("arguments", {}))},
                }
            )
        elif type_ == EventType.DONE:
            self.done, self.done_value = meta, value

    def body(self) -> dict[str, Any]:
        meta = self.done or {}
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None, "refusal": None}
        if self.text == [] and not self.calls:
            message["content"] = ""
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            message["tool_calls"] = self.calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(meta.get("finish_reason")),
                }
            ],
            "usage": openai_usage(meta.get("usage")),
            "lmstream": extension(meta, self.done_value),
        }


# ---------------------------------------------------------------------------- request -> processor


def prompt_arguments(slot_key: str | None, messages: list[Message]) -> dict[str, Any]:
    """`history`, `prompt_kwargs` and `extra_contents` for `processor.stream()`.

    A processor whose user template has no key (what `lmstream serve` builds) gets the whole
    conversation as history, whatever its last message is (a tool result, for a tool round trip).
    A template with a key is filled with the last user message's text, as `/api/chat` does."""
    if slot_key is None:
        return {"history": messages, "prompt_kwargs": {}, "extra_contents": None}
    last = messages[-1]
    if last.role != "user":
        raise _bad(
            "messages",
            "this server fills a prompt template with the last message, so it must be the user's "
            f"(it is {last.role!r})",
        )
    files = [c for c in last.contents if not isinstance(c, str)]
    return {"history": messages[:-1], "prompt_kwargs": {slot_key: last.text}, "extra_contents": files or None}


def tool_settings(
    tools: list[dict[str, Any]], choice: Any, allow_client_tools: bool, accepted: frozenset[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The client's tools to give the model, and a `tool_choice` hyperparameter when one is
    needed. `accepted` are the hyperparameter names the model's invoker takes."""
    if tools and not allow_client_tools:
        raise OpenAIError(
            "tools: this server does not take tools from clients; the operator can allow them with "
            "`lmstream serve --allow-client-tools`",
            param="tools",
            code="client_tools_not_allowed",
        )
    if choice == "none" or not tools:
        return [], {}
    if choice in (None, "auto"):
        return tools, {}
    if "tool_choice" not in accepted:
        raise _bad("tool_choice", "this model takes no tool_choice; send auto or leave it out")
    return tools, {"tool_choice": choice}


def processor_for(
    processor: LMRequestProcessor[Any], tools: list[dict[str, Any]], schema: dict[str, Any] | None
) -> LMRequestProcessor[Any]:
    """A processor for one request: the server's own when the request brings no tools and no
    schema (and it has no output parser), else one over the same invoker with the client's
    tools and schema, which go with this request's model calls only (an invoker keeps no
    request's tools). Raises `OpenAIError` when the model cannot take them."""
    if not tools and schema is None and processor.output_parser is None:
        return processor
    run = copy.copy(processor)  # the same invoker, builder, budget and cache; its own tools and schema
    run.output_parser = None
    try:
        if tools:
            run.set_tools(tools)
        if schema is not None:
            run.set_response_schema(schema)
    except ConfigurationError as exc:
        raise OpenAIError(str(exc), param="tools" if tools else "response_format") from None
    return run


async def release(processor: LMRequestProcessor[Any], shared: LMRequestProcessor[Any]) -> None:
    """Nothing to close: a per-request processor shares the server's invoker, its clients and
    connection pool (the call carries the request's tools, not a copy of the invoker)."""
    return None
