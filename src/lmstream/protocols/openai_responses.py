"""OpenAI Responses API, both ways: a `POST /v1/responses` body -> processor arguments, and
lmstream events -> the Responses streaming events. Pure: no I/O.

The stream: `response.created`, `response.in_progress`, then per output item
`response.output_item.added` ... `response.output_item.done` (a message with its
`response.output_text.delta`s, a reasoning item with `response.reasoning_text.delta`s, or a
function call with `response.function_call_arguments.delta`s), and last `response.completed`
(or `response.incomplete` when the model hit its token limit) with usage. A failure sends
`response.failed` and an `error` event whose `error` field makes the official SDKs raise it.
Nothing is stored: `previous_response_id` and `store: true` are refused, not ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..events import EventType
from ..prompt import Content, Message
from ..types import ToolCall, ToolResult
from .openai_chat import (
    OpenAIError,
    _text_parts,
    data_url_attachment,
    error_body,
    extension,
    failure,
    parse_tools,
    restart_failure,
)

__all__ = ["ResponsesEvents", "ResponsesRequest", "parse_responses", "responses_usage"]

_SAMPLING = {"max_output_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p"}
_IGNORED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "store",
        "user",
        "metadata",
        "truncation",
        "reasoning",
        "include",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "stream_options",
    }
)

Item = dict[str, Any]


def _bad(param: str, message: str) -> OpenAIError:
    return OpenAIError(f"{param}: {message}", param=param)


@dataclass(slots=True)
class ResponsesRequest:
    model: str
    messages: list[Message]
    stream: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    response_schema: dict[str, Any] | None = None
    instructions: str | None = None


def _input_contents(content: Any, where: str, role: str) -> list[Content]:
    if isinstance(content, list):
        parts: list[Content] = []
        for j, p in enumerate(content):
            pw = f"{where}[{j}]"
            if isinstance(p, dict) and p.get("type") == "input_image" and role == "user":
                url = p.get("image_url")
                if not isinstance(url, str):
                    raise _bad(f"{pw}.image_url", "must be a data: URL")
                parts.append(data_url_attachment(url, f"{pw}.image_url"))
            else:
                parts.extend(_text_parts([p], where, False))
        return parts
    return _text_parts(content, where, False)


def _input(raw: Any, max_messages: int) -> list[Message]:
    if isinstance(raw, str):
        if not raw:
            raise _bad("input", "must not be empty")
        return [Message.user(raw)]
    if not isinstance(raw, list) or not raw:
        raise _bad("input", "must be a string or a non-empty array of items")
    if len(raw) > max_messages:
        raise _bad("input", f"too many items ({len(raw)}; at most {max_messages})")
    out: list[Message] = []
    names: dict[str, str] = {}
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(where, "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}.role", "must be user, assistant, system or developer")
            contents = _input_contents(item.get("content"), f"{where}.content", role)
            out.append(Message("system" if role == "developer" else role, contents))
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise _bad(where, "a function_call needs call_id and name")
            args_text = item.get("arguments") or "{}"
            try:
                args = json.loads(args_text) if isinstance(args_text, str) else None
            except ValueError:
                args = None
            if not isinstance(args, dict):
                raise _bad(f"{where}.arguments", "must be a JSON object in a string")
            names[call_id] = name
            call = ToolCall(call_id, name, args)
            if out and out[-1].role == "assistant":
                out[-1].contents.append(call)
            else:
                out.append(Message("assistant", [call]))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or call_id not in names:
                raise _bad(f"{where}.call_id", "answers no function_call of an earlier item")
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            result = ToolResult(call_id, names[call_id], text)
            if out and out[-1].role == "tool":
                out[-1].contents.append(result)
            else:
                out.append(Message.tool(result))
        elif kind == "reasoning":
            continue  # the model's earlier reasoning: not sent back
        else:
            raise _bad(f"{where}.type", f"items of type {str(kind)[:40]!r} are not supported here")
    return out


def parse_responses(body: Any, max_messages: int = 500) -> ResponsesRequest:
    """Check a `POST /v1/responses` body; every error names its field."""
    if not isinstance(body, dict):
        raise _bad("body", "must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "must be the name of a served model (GET /v1/models lists them)")
    if body.get("previous_response_id") is not None:
        raise _bad("previous_response_id", "this server keeps no responses; send the whole conversation in input")
    if body.get("store"):
        raise _bad("store", "this server keeps no responses; send store: false")
    if body.get("background"):
        raise _bad("background", "is not supported")
    for key in body:
        if key not in _SAMPLING and key not in _IGNORED and key not in ("previous_response_id", "background"):
            raise _bad(str(key)[:40], "not a field this server accepts")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream", "must be true or false")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("instructions", "must be a string")
    messages = _input(body.get("input"), max_messages)
    if instructions:
        messages.insert(0, Message.system(instructions))
    schema = None
    text = body.get("text")
    if text is not None:
        fmt = text.get("format") if isinstance(text, dict) else None
        if fmt is not None:
            if not isinstance(fmt, dict):
                raise _bad("text.format", "must be an object")
            if fmt.get("type") == "json_schema":
                schema = fmt.get("schema")
                if not isinstance(schema, dict):
                    raise _bad("text.format.schema", "must be a JSON schema object")
            elif fmt.get("type") == "json_object":
                schema = {"type": "object"}
            elif fmt.get("type") != "text":
                raise _bad("text.format.type", "must be text, json_object or json_schema")
    choice = body.get("tool_choice")
    if choice is not None and not (choice in ("none", "auto", "required") or isinstance(choice, dict)):
        raise _bad("tool_choice", "must be none, auto, required or {type: 'function', name}")
    if isinstance(choice, dict):  # the Responses form {type, name} -> Chat Completions' {type, function: {name}}
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    return ResponsesRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        sampling={_SAMPLING[k]: v for k, v in body.items() if k in _SAMPLING and v is not None},
        tools=parse_tools(body["tools"], flat=True) if body.get("tools") else [],
        tool_choice=choice,
        response_schema=schema,
        instructions=instructions,
    )


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """lmstream's usage -> the Responses API's (a count not reported is null)."""
    u = usage or {}
    i, o = u.get("input_tokens"), u.get("output_tokens")
    return {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": u.get("cached_tokens") or 0},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": u.get("reasoning_tokens") or 0},
        "total_tokens": i + o if isinstance(i, int) and isinstance(o, int) else None,
    }


class ResponsesEvents:
    """One answer's events -> Responses streaming events (dicts with `type` and
    `sequence_number`), and the final `response` object for a non-streaming call."""

    def __init__(
        self,
        model: str,
        *,
        client_tools: bool = False,
        request: ResponsesRequest | None = None,
        id: str | None = None,
    ) -> None:
        self.id = id or f"resp_{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())
        self.client_tools = client_tools
        self.request = request
        self.output: list[Item] = []
        self._seq = 0
        self._open: Item | None = None  # the item receiving deltas
        self._open_key: Any = None
        self._calls: dict[Any, Item] = {}
        self.closed = False
        self.finished = False
        self.final: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers
    def _ev(self, type_: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": type_, "sequence_number": self._seq, **fields}
        self._seq += 1
        return ev

    def response(self, status: str, **extra: Any) -> dict[str, Any]:
        req = self.request
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": req.instructions if req else None,
            "max_output_tokens": (req.sampling.get("max_tokens") if req else None),
            "model": self.model,
            "output": list(self.output),
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "store": False,
            "temperature": req.sampling.get("temperature") if req else None,
            "top_p": req.sampling.get("top_p") if req else None,
            "tool_choice": "auto",
            "tools": [{"type": "function", "strict": False, **t} for t in req.tools] if req else [],
            "text": {"format": {"type": "text"}},
            "usage": None,
            **extra,
        }

    def _close_open(self, out: list[dict[str, Any]]) -> None:
        item = self._open
        if item is None:
            return
        index = self.output.index(item)
        if item["type"] == "message":
            part = item["content"][0]
            out.append(
                self._ev(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            out.append(
                self._ev(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        elif item["type"] == "reasoning":
            part = item["content"][0]
            out.append(
                self._ev(
                    "response.reasoning_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                )
            )
        item["status"] = "completed"
        out.append(self._ev("response.output_item.done", output_index=index, item=item))
        self._open = None
        self._open_key = None

    def _open_item(self, key: Any, item: Item, out: list[dict[str, Any]]) -> Item:
        self._close_open(out)
        self.output.append(item)
        self._open, self._open_key = item, key
        out.append(self._ev("response.output_item.added", output_index=len(self.output) - 1, item=dict(item)))
        return item

    # ------------------------------------------------------------------ mapping
    def start(self) -> list[dict[str, Any]]:
        return [
            self._ev("response.created", response=self.response("in_progress")),
            self._ev("response.in_progress", response=self.response("in_progress")),
        ]

    def feed(self, type_: str, value: Any, meta: dict[str, Any]) -> list[dict[str, Any]]:
        if self.closed:
            return []
        out: list[dict[str, Any]] = []
        if type_ == EventType.RESPONSE and value:
            item = self._open
            if item is None or item["type"] != "message":
                item = self._open_item(
                    "text",
                    {
                        "id": f"msg_{uuid.uuid4().hex}",
                        "type": "message",
                        "status": "in_progress",
                        "role": "assistant",
                        "content": [],
                    },
                    out,
                )
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                item["content"].append(part)
                out.append(
                    self._ev(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=len(self.output) - 1,
                        content_index=0,
                        part=dict(part),
                    )
                )
            item["content"][0]["text"] += value
            out.append(
                self._ev(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    content_index=0,
                    delta=value,
                    logprobs=[],
                )
            )
            return out
        if type_ == EventType.THINKING and value:
            item = self._open
            if item is None or item["type"] != "reasoning":
                item = self._open_item(
                    "reasoning",
                    {
                        "id": f"rs_{uuid.uuid4().hex}",
                        "type": "reasoning",
                        "status": "in_progress",
                        "summary": [],
                        "content": [{"type": "reasoning_text", "text": ""}],
                    },
                    out,
                )
            item["content"][0]["text"] += value
            out.append(
                self._ev(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    content_index=0,
                    delta=value,
                )
            )
            return out
        if not self.client_tools and type_ in (
            EventType.TOOL_CALL_START,
            EventType.TOOL_CALL_DELTA,
            EventType.TOOL_CALL,
        ):
            return out
        if type_ == EventType.TOOL_CALL_START:
            self._call_item(meta.get("block_id"), value, out)
            return out
        if type_ == EventType.TOOL_CALL_DELTA:
            item = self._calls.get(meta.get("block_id"))
            if item is not None and value:
                item["arguments"] += value
                out.append(
                    self._ev(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.output.index(item),
                        delta=value,
                    )
                )
            return out
        if type_ == EventType.TOOL_CALL:
            item = self._calls.get(meta.get("block_id")) or self._call_item(meta.get("block_id"), value, out)
            whole = json.dumps(value.get("arguments", {}))
            if not item["arguments"]:
                item["arguments"] = whole
                out.append(
                    self._ev(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.output.index(item),
                        delta=whole,
                    )
                )
            out.append(
                self._ev(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=self.output.index(item),
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            if self._open is item:
                self._close_open(out)
            return out
        if type_ == EventType.DONE:
            self._close_open(out)
            reason = meta.get("finish_reason")
            usage = responses_usage(meta.get("usage"))
            if reason == "length":
                final = self.response("incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=usage)
                kind = "response.incomplete"
            elif reason == "content_filter":
                final = self.response("incomplete", incomplete_details={"reason": "content_filter"}, usage=usage)
                kind = "response.incomplete"
            else:
                final = self.response("completed", usage=usage, completed_at=int(time.time()))
                kind = "response.completed"
            final["lmstream"] = extension(meta, value)
            self.final = final
            out.append(self._ev(kind, response=final))
            self.closed = self.finished = True
            return out
        if type_ == EventType.ERROR:
            return self.error(*failure(meta))
        if type_ == EventType.RESET and value.get("discarded"):
            return self.error(*restart_failure(value))
        return out

    def _call_item(self, key: Any, value: dict[str, Any], out: list[dict[str, Any]]) -> Item:
        item = self._open_item(
            ("call", key),
            {
                "id": f"fc_{uuid.uuid4().hex}",
                "type": "function_call",
                "status": "in_progress",
                "call_id": str(value.get("id")),
                "name": str(value.get("name")),
                "arguments": "",
            },
            out,
        )
        self._calls[key] = item
        return item

    def error(self, message: str, type_: str = "server_error", code: str | None = None) -> list[dict[str, Any]]:
        """`response.failed`, then the `error` event (its `error` field is what the SDKs raise)."""
        self.closed = True
        failed = self.response("failed", error={"code": code or "server_error", "message": message})
        return [
            self._ev("response.failed", response=failed),
            self._ev("error", code=code, message=message, param=None, **error_body(message, type_, None, code)),
        ]
