"""The shape of each event type's `value`, as `TypedDict`s: what the engine emits and what every
consumer (the UI and OpenAI mappers, the Redis codec, the handlers, the CLI) reads, checked by
mypy on both sides instead of keys looked up by string.

`response`, `thinking`, `tool_call_delta` and `error` carry text (`str`); `thinking_start` and
`thinking_end` carry ""; `data` carries the user's JSON value. The rest carry the dicts below.
`EVENT_VALUES` maps each event type to its shape (`str` for the text ones).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "EVENT_VALUES",
    "AttemptValue",
    "CacheValue",
    "DoneValue",
    "FileValue",
    "ResetValue",
    "StatusValue",
    "ToolApprovalRequestValue",
    "ToolCallStartValue",
    "ToolCallValue",
    "ToolProgressValue",
    "ToolResultValue",
    "UsageValue",
]


class ToolCallStartValue(TypedDict):
    """`tool_call_start`: a call the model began (its arguments stream as `tool_call_delta`)."""

    id: str
    name: str


class ToolCallValue(TypedDict):
    """`tool_call`: a whole call, its arguments parsed."""

    id: str
    name: str
    arguments: dict[str, Any]


class _ToolResultBase(TypedDict):
    id: str
    name: str
    output: Any  # the tool's own value when it is JSON data, else the text the model was sent


class ToolResultValue(_ToolResultBase, total=False):
    """`tool_result`: what a tool returned (`metadata["is_error"]` when it raised); `denied`
    when a person refused the call (or nobody answered in time)."""

    denied: Literal[True]


class ToolApprovalRequestValue(TypedDict):
    """`tool_approval_request`: a call waiting for a person's yes or no."""

    approval_id: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]


class ToolProgressValue(TypedDict):
    """`tool_progress`: a running tool's progress (MCP progress notifications)."""

    tool_call_id: str
    name: str
    progress: float
    total: float | None
    message: str | None


class _StatusBase(TypedDict):
    state: str  # "queued" or "running"


class StatusValue(_StatusBase, total=False):
    """`status`: where a request stands before it runs (the embedded engine's queue)."""

    position: int  # 1-based place in line, while queued


#: `reset`: a fallback model took over after content had streamed; `discarded` characters of
#: the answer so far are void (0 when the next model continues the text). ("from" is a keyword.)
ResetValue = TypedDict("ResetValue", {"reason": str, "from": str, "to": str, "discarded": int})


class _FileBase(TypedDict):
    mime_type: str


class FileValue(_FileBase, total=False):
    """`file`: a file the model produced; `data` is base64. Partials of one file share a
    `block_id` and carry `partial_index`; the final one has none."""

    url: str
    data: str
    partial_index: int


class UsageValue(TypedDict, total=False):
    """`TokenUsage.to_dict()`: in the `done` event's `metadata["usage"]`; None = not reported."""

    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    cost: dict[str, float] | None
    saved_cost: dict[str, float]


class _AttemptBase(TypedDict):
    model: str
    outcome: str  # "ok", "error", "timeout", "interrupted"
    output_tokens: int | None
    usage: UsageValue


class AttemptValue(_AttemptBase, total=False):
    """One model call a fallback chain or pool made: the failure's kind, never its message."""

    error: str
    status_code: int


class CacheValue(TypedDict):
    """How the response cache served the answer."""

    hit: bool
    joined: bool
    age: float | None


class DoneValue(TypedDict, total=False):
    """`done` (when not ""): the model calls a fallback chain or pool made, and how the response
    cache served the answer. Usage and timings are in the event's metadata."""

    attempts: list[AttemptValue]
    cache: CacheValue


#: each event type's value shape (`str` for text; `object` for `data`, the user's own value), by
#: `EventType` value (this module imports nothing: `types` builds values with these shapes)
EVENT_VALUES: dict[str, type] = {
    "response": str,
    "thinking_start": str,
    "thinking": str,
    "thinking_end": str,
    "tool_call_start": ToolCallStartValue,
    "tool_call_delta": str,
    "tool_call": ToolCallValue,
    "tool_result": ToolResultValue,
    "tool_approval_request": ToolApprovalRequestValue,
    "tool_progress": ToolProgressValue,
    "reset": ResetValue,
    "status": StatusValue,
    "file": FileValue,
    "data": object,
    "error": str,
    "done": DoneValue,
}
