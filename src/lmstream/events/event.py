"""The event itself: what every handler, stream and transport passes around.

`Event` is the hot path (one per streamed token): slotted, with its id and ISO timestamp
computed only when read.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from .. import _json

__all__ = ["Event", "EventLevel", "EventType"]


class EventLevel(IntEnum):
    """Ordered severity; serialised by name (`"INFO"`)."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5


class EventType(StrEnum):
    """Built-in event types. Any other string is a valid user-defined type.

    Reserved, never emitted by lmstream itself: `code_start`, `code`, `code_end`, `activity`,
    `reference`, `status`, `usage`. They are kept so code written for GLLM (`gllm-core`), and
    users' own emitters, share one vocabulary; usage travels in the done event's metadata.

    `tool_approval_request` (value `{"approval_id", "tool_call_id", "name", "arguments"}`) asks a
    person to approve a call before it runs; `tool_progress` (value `{"tool_call_id", "name",
    "progress", "total", "message"}`) reports a running tool's progress (MCP progress notifications).
    """

    RESPONSE = "response"
    THINKING_START = "thinking_start"
    THINKING = "thinking"
    THINKING_END = "thinking_end"
    CODE_START = "code_start"
    CODE = "code"
    CODE_END = "code_end"
    ACTIVITY = "activity"
    REFERENCE = "reference"
    DATA = "data"
    STATUS = "status"
    TOOL_CALL_START = "tool_call_start"
    TOOL_CALL_DELTA = "tool_call_delta"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    TOOL_APPROVAL_REQUEST = "tool_approval_request"
    TOOL_PROGRESS = "tool_progress"
    USAGE = "usage"
    ERROR = "error"
    DONE = "done"


# Wall clock anchored once, advanced by the monotonic clock: timestamps never go backwards.
_WALL0 = time.time()
_MONO0 = time.perf_counter()
_perf = time.perf_counter


def _now() -> float:
    return _WALL0 + (_perf() - _MONO0)


_ID_PREFIX = os.urandom(4).hex()
_next_seq = itertools.count(1).__next__
_UTC = UTC


class Event:
    """One thing that happened during a request.

    `value` is the token text for `response` events (a dict for structured events such as
    `tool_call`); `metadata` carries `request_id` and `block_id`. Treat `metadata` as read-only:
    events of one block share the same dict.
    """

    __slots__ = ("_id", "_seq", "_ts", "level", "metadata", "type", "value")

    value: str | dict[str, Any]
    type: str
    level: EventLevel
    metadata: dict[str, Any]

    def __init__(
        self,
        value: Any = "",
        type: str = EventType.RESPONSE,
        level: EventLevel = EventLevel.INFO,
        metadata: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        timestamp: datetime | float | None = None,
    ) -> None:
        self.value = value
        self.type = type
        self.level = level
        self.metadata = metadata if metadata is not None else {}
        if timestamp is None:
            self._ts = _now()
        elif isinstance(timestamp, datetime):
            self._ts = timestamp.timestamp()
        else:
            self._ts = float(timestamp)
        self._seq = _next_seq()
        self._id = id

    @property
    def id(self) -> str:
        """Unique within the process: a random per-process prefix plus a sequence number."""
        if self._id is None:
            self._id = f"evt_{_ID_PREFIX}_{self._seq}"
        return self._id

    @property
    def timestamp(self) -> datetime:
        """When the event was created (timezone-aware UTC)."""
        return datetime.fromtimestamp(self._ts, _UTC)

    def to_dict(self) -> dict[str, Any]:
        """`{"id","value","level","type","timestamp","metadata"}`, level by name, ISO timestamp."""
        return {
            "id": self.id,
            "value": self.value,
            "level": EventLevel(self.level).name,
            "type": str(self.type),
            "timestamp": self.timestamp.isoformat(),
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        return _json.dumps(self.to_dict())

    def __repr__(self) -> str:
        return (
            f"Event(type={str(self.type)!r}, value={self.value!r}, level={EventLevel(self.level).name}, id={self.id!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.id == other.id and self.value == other.value and self.type == other.type

    def __hash__(self) -> int:  # ids are unique, so events can go in sets and dict keys
        return hash(self.id)
