"""How events sit in a chat's Redis stream, and how positions name them.

Stream entry layout (one entry = one flush of the producer, several events):
  ``s``  sequence number of the entry's first event within the request (0-based)
  ``n``  number of events in the entry
  ``e``  JSON array of compact events
  ``t``  ``"1"`` on the last entry (the request's ``done`` or ``error``)
The ``s``/``n`` counters let a reader prove it saw every event: a gap (trimmed entries, a stream
replaced by a newer request) is detected instead of silently skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple, TypedDict

from .. import _json
from ..errors import StreamGoneError
from ..events import Event, EventLevel, EventType

__all__ = [
    "BATCHED_TYPES",
    "TERMINAL_TYPES",
    "StreamItem",
    "decode_events",
    "encode_events",
    "entry_start",
    "field",
    "make_position",
    "parse_position",
    "s",
]

#: event types merged into one entry until the batch is due; anything else flushes at once
BATCHED_TYPES = frozenset(
    {EventType.RESPONSE, EventType.THINKING, EventType.TOOL_CALL_DELTA, EventType.CODE, EventType.DATA}
)
#: the event types that end a request's stream
TERMINAL_TYPES = frozenset({EventType.DONE, EventType.ERROR})


class StreamItem(NamedTuple):
    """One event read back from Redis and its position: send `id` as the SSE ``id:``."""

    id: str
    event: Event


def make_position(entry_id: str, index: int) -> str:
    """``<redis-entry-id>:<index>``: names one event inside a batched entry exactly."""
    return f"{entry_id}:{index}"


#: ``<ms>-<seq>:<index>`` in ASCII digits of sane length (not "²", not 4,301 digits)
#: each half of a Redis stream entry id is an unsigned 64-bit number
_MAX_ID_PART = 2**64 - 1
_POSITION = re.compile(r"([0-9]{1,20}-[0-9]{1,20}):([0-9]{1,9})")


def parse_position(position: str) -> tuple[str, int]:
    """The entry id and event index of a position; `StreamGoneError` for anything else."""
    m = _POSITION.fullmatch(position.strip())
    if m is None:
        raise StreamGoneError(f"not a stream position: {position[:40]!r} (expected '<ms>-<seq>:<index>')")
    ms, _, seq = m[1].partition("-")
    if int(ms) > _MAX_ID_PART or int(seq) > _MAX_ID_PART:  # Redis would refuse the id (not a 503: a 410)
        raise StreamGoneError(f"not a stream position: {position[:40]!r} (its entry id is out of range)")
    return m[1], int(m[2])


def s(value: Any) -> str:
    """redis-py returns bytes or str depending on `decode_responses`; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)


def field(fields: dict[Any, Any], name: str) -> Any:
    """An entry's field by name, whether redis-py decoded the reply or not."""
    v = fields.get(name)
    return fields.get(name.encode()) if v is None else v


def entry_start(fields: dict[Any, Any]) -> int:
    """The sequence number of an entry's first event; `StreamGoneError` for an entry lmstream did
    not write (the key holds something else)."""
    raw = field(fields, "s")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StreamGoneError("the chat's stream holds an entry lmstream did not write") from None


class _EncodedBase(TypedDict):
    i: str  # the event's id
    v: Any  # its value (the shape `lmstream.event_values` gives its type)
    t: str  # its type
    ts: float  # its epoch


class EncodedEvent(_EncodedBase, total=False):
    """One event in a stream entry: `l` its level when not INFO, `m` its metadata when it is not
    the previous event's (the same block's)."""

    l: int  # noqa: E741 - the wire's one-letter keys
    m: dict[str, Any]


def encode_events(events: Iterable[Event]) -> bytes:
    """Compact JSON; an event whose metadata dict is the previous one's (same block) omits it."""
    out: list[EncodedEvent] = []
    prev_meta: object = None
    for ev in events:
        d: EncodedEvent = {"i": ev.id, "v": ev.value, "t": str(ev.type), "ts": ev.epoch}
        if ev.level != EventLevel.INFO:
            d["l"] = int(ev.level)
        if ev.metadata is not prev_meta:
            d["m"] = ev.metadata
            prev_meta = ev.metadata
        out.append(d)
    return _json.dumpb(out)


def decode_events(raw: Any) -> list[Event]:
    """The events of one entry; `StreamGoneError` for an entry lmstream did not write."""
    events: list[Event] = []
    meta: dict[str, Any] = {}
    try:
        entries: list[EncodedEvent] = _json.loads(raw)
        for d in entries:
            if "m" in d:
                meta = d["m"]
            events.append(Event(d["v"], d["t"], EventLevel(d.get("l", 2)), meta, id=d["i"], timestamp=d["ts"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise StreamGoneError(f"the chat's stream holds an entry lmstream did not write ({exc!r})") from None
    return events
