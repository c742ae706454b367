"""The cache key: one request, normalised, hashed.

Two requests share an answer only when everything the model sees and everything that shapes
its sampling are equal: the invoker (class, provider and model, endpoint), the formatted
messages (attachments by the hash of their bytes), the tools, the response schema and the
hyperparameters, within one scope (the tenant). How the request arrived (library, `/api/chat`,
`/v1/stream`, `/v1/chat/completions`) is not part of it, so every transport shares entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..prompt import Message
from ..types import Attachment, ThinkingBlock, ToolCall, ToolResult

__all__ = ["deterministic", "request_key"]

#: bump when the key's inputs or the entry format change: old entries then simply miss
KEY_VERSION = 1


def deterministic(params: Mapping[str, Any]) -> bool:
    """Whether the same request gives the same answer: temperature 0, or a fixed seed."""
    temperature = params.get("temperature")
    return (temperature is not None and float(temperature) == 0.0) or params.get("seed") is not None


def request_key(
    scope: Any,
    invoker: Any,
    messages: Sequence[Message],
    params: Mapping[str, Any],
    tools: Sequence[Any] = (),
    client_tools: bool = False,
    schema: dict[str, Any] | None = None,
) -> str:
    """A hex digest naming the request. `invoker` is read by attribute only (`model_id`,
    `endpoint()`); `tools` by `name`, `description`, `parameters`; `schema` is the response
    schema the request sends."""
    doc = {
        "v": KEY_VERSION,
        "scope": scope,
        "invoker": type(invoker).__qualname__,
        "model": invoker.model_id,
        "base_url": invoker.endpoint(),
        "messages": [_message(m) for m in messages],
        "tools": [_tool(t) for t in tools],
        "client_tools": client_tools,
        "schema": schema,
        "params": {k: _number(v) for k, v in params.items()},
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_other)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _number(v: Any) -> Any:
    """`0` and `0.0` are the same temperature."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _message(m: Message) -> list[Any]:
    return [m.role, [_content(c) for c in m.contents]]


def _content(c: Any) -> Any:
    if isinstance(c, str):
        return c
    if isinstance(c, ToolCall):
        return {"call": [c.id, c.name, c.arguments]}
    if isinstance(c, ToolResult):
        return {"result": [c.id, c.name, c.output, c.is_error, c.denied]}
    if isinstance(c, ThinkingBlock):
        return {"thinking": [c.text, c.signature]}
    if isinstance(c, Attachment):
        return {"file": [c.mime_type, c.filename, _digest(c.data)]}
    return _other(c)


def _tool(t: Any) -> Any:
    return [getattr(t, "name", None), getattr(t, "description", None), getattr(t, "parameters", None)]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _other(v: Any) -> Any:
    """Anything else in a request (another kind of content, a URL attachment): bytes by hash,
    dataclasses field by field, else its type and repr (which at worst only splits entries)."""
    if isinstance(v, bytes | bytearray | memoryview):
        return {"bytes": _digest(bytes(v))}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {type(v).__qualname__: {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}}
    return {type(v).__qualname__: repr(v)}
