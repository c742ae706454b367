"""Server-sent events framing: the one place that writes SSE bytes.

Every stream the server sends (the UI message stream, lmstream's own events, resumes, heartbeats)
is framed here. A frame that carries several messages puts its ``id:`` on the last one, so a
client that saw the id has seen every message of the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._json import dumpb
from ..events import Event

__all__ = ["DONE", "PING", "SSE_HEADERS", "data_frame", "event_frame", "named_frame", "ui_frame"]

SSE_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "connection": "keep-alive",
    "x-accel-buffering": "no",
}

#: the UI message stream's last message
DONE = b"data: [DONE]\n\n"
#: a comment line: keeps proxies from closing an idle stream, ignored by every client
PING = b": keep-alive\n\n"


def ui_frame(chunks: Sequence[dict[str, Any]], position: str | None = None, done: bool = False) -> bytes:
    """UI message chunks, one `data:` message each; `position` rides on the last chunk; `done`
    appends `[DONE]`."""
    if len(chunks) == 1 and position is None and not done:
        return b"data: " + dumpb(chunks[0]) + b"\n\n"  # hot path: one text delta
    parts = [b"data: " + dumpb(c) + b"\n\n" for c in chunks]
    if position is not None and parts:
        parts[-1] = b"id: " + position.encode() + b"\n" + parts[-1]
    if done:
        parts.append(DONE)
    return b"".join(parts)


def event_frame(event: Event) -> bytes:
    """One lmstream event: ``id:`` its id, ``event:`` its type, ``data:`` its JSON."""
    return f"id: {event.id}\nevent: {event.type}\ndata: ".encode() + event.to_json().encode() + b"\n\n"


def data_frame(obj: dict[str, Any]) -> bytes:
    """One `data:` message (a Chat Completions chunk)."""
    return b"data: " + dumpb(obj) + b"\n\n"


def named_frame(obj: dict[str, Any]) -> bytes:
    """One message named by the object's `type` (a Responses API event), as OpenAI sends them."""
    return b"event: " + str(obj.get("type")).encode() + b"\ndata: " + dumpb(obj) + b"\n\n"
