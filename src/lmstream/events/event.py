"""The event itself: what every handler, stream and transport passes around.

`Event` is the hot path (one per streamed token): slotted, with its id and ISO timestamp
computed only when read.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime
from typing import Any

from .. import _json
from ..types import EventLevel, EventType

__all__ = ["Event", "EventLevel", "EventType"]


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

    __slots__ = ("_id", "_seq", "epoch", "level", "metadata", "type", "value")

    value: str | dict[str, Any]
    type: str
    level: EventLevel
    metadata: dict[str, Any]
    #: when the event was created, in seconds since the Unix epoch (what `timestamp` shows as a
    #: datetime): the cheap form for transports and latency measurements
    epoch: float

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
            self.epoch = _now()
        elif isinstance(timestamp, datetime):
            self.epoch = timestamp.timestamp()
        else:
            self.epoch = float(timestamp)
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
        return datetime.fromtimestamp(self.epoch, _UTC)

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
