"""An answer's events -> the bytes of its HTTP response (UI message stream or lmstream's SSE).

Three producers: `live_ui_frames` (an answer running inside this response, its events also
written to the chat's log for stop and resume), `replay_ui_frames` (any answer a registry holds:
replayed from its first event through a fresh mapper, sending only what follows the client's
position) and `event_frames` (`/v1/stream`). Every stream ends with its terminal chunk and
`[DONE]`, a failure included: a reader never sees a stream that just stops.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from ..chat_registry import ChatLog, Positioned
from ..events import Event, EventLevel, EventType
from ..protocols.errors import browser_error_text, public_error_text, redact
from ..protocols.sse import DONE, event_frame, ui_frame
from ..protocols.ui_stream import Chunk, UIStreamMapper, message_id_of
from .running import SHUTDOWN_ERROR, SHUTDOWN_MESSAGE, RunningRequest

__all__ = ["event_frames", "live_ui_frames", "replay_ui_frames"]

logger = logging.getLogger("lmstream.server")

_TERMINAL = (EventType.DONE, EventType.ERROR)


def is_stop(ev: Event) -> bool:
    """A stopped answer's last event (the registry contract: an error of type CancelledError)."""
    return ev.type == EventType.ERROR and ev.metadata.get("error_type") == "CancelledError"


def _chunks(mapper: UIStreamMapper, ev: Event) -> list[Chunk]:
    if ev.type == EventType.ERROR:
        if ev.metadata.get("error_type") == SHUTDOWN_ERROR:  # the server's own words, no details
            return mapper.feed(ev.type, SHUTDOWN_MESSAGE, ev.metadata)
        if is_stop(ev):
            return mapper.stopped()  # a stop is `abort`, not an error
        if not mapper.closed:  # the browser gets the kind of failure, the log the details
            error_type = ev.metadata.get("error_type")
            logger.warning("lmstream: an answer failed: %s: %s", error_type, public_error_text(str(ev.value)))
            return mapper.feed(ev.type, browser_error_text(error_type), ev.metadata)
    return mapper.feed(ev.type, ev.value, ev.metadata)


def _failure_frame(mapper: UIStreamMapper | None, exc: BaseException) -> bytes:
    """The end of a stream the server could not finish: one `error` chunk, then `[DONE]`."""
    logger.warning("lmstream: a chat stream failed: %s", public_error_text(exc))
    chunk: Chunk = {"type": "error", "errorText": browser_error_text(type(exc).__name__)}
    if mapper is None:
        return ui_frame([chunk], done=True)
    if mapper.closed:
        return DONE
    mapper.closed = True
    return ui_frame([chunk], done=True)


async def live_ui_frames(
    run: RunningRequest,
    log: ChatLog,
    stopped: Callable[[], bool],
    mapper: UIStreamMapper | None = None,
    notice: bytes = b"",
) -> AsyncIterator[bytes]:
    """The answer's UI frames as it runs; each event also goes to `log` (its position rides on the
    frame). `stopped()` says whether an `error` event is the stop the user asked for. `mapper`
    continues a message the client has (after tool approvals); a new one by default. `notice`
    (a `context_frame`) goes out with the `start` chunk."""
    mapper = mapper or UIStreamMapper(message_id=message_id_of(run.request_id))
    try:
        yield ui_frame([mapper.start()]) + notice
        batch: list[bytes] = []  # frames of events that were already waiting: one write for all
        with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
            async for ev in run.events():
                ev = run.terminal(ev)
                position = log.write(ev)
                if ev.type == EventType.ERROR and stopped():
                    chunks = mapper.stopped()
                else:
                    chunks = _chunks(mapper, ev)
                if chunks:
                    batch.append(ui_frame(chunks, position))
                if batch and not run.pending():
                    yield batch[0] if len(batch) == 1 else b"".join(batch)
                    batch.clear()
        if not mapper.closed:  # ended without done/error: it was cancelled
            meta = {"request_id": run.request_id, "error_type": "CancelledError"}
            ev = run.terminal(Event("request stopped", EventType.ERROR, EventLevel.ERROR, meta))
            position = log.write(ev)
            batch.append(ui_frame(_chunks(mapper, ev), position))
        batch.append(DONE)
        yield b"".join(batch)
    finally:
        run.cancel()
        await log.aclose()


def context_frame(dropped: int) -> bytes:
    """A `data-context` part when older messages were left out to fit the model's window."""
    if not dropped:
        return b""
    return ui_frame([{"type": "data-context", "id": "context", "data": {"dropped": dropped}}])


async def replay_ui_frames(
    items: AsyncIterator[Positioned], after: str | None = None, notice: bytes = b""
) -> AsyncIterator[bytes]:
    """UI frames of a whole answer read from its first event, sending only those after position
    `after` (all when None). The message id comes from the request id, so a resumed response
    joined to the interrupted one is what an uninterrupted one sends. `notice` (a
    `context_frame`) goes out with the first frame, the one with the `start` chunk."""
    mapper: UIStreamMapper | None = None
    sending = after is None
    try:
        async for position, ev in items:
            chunks: list[Chunk] = []
            if mapper is None:
                rid = ev.metadata.get("request_id") or position
                mapper = UIStreamMapper(message_id=message_id_of(str(rid)))
                chunks.append(mapper.start())
            chunks += _chunks(mapper, ev)
            terminal = ev.type in _TERMINAL
            if terminal and not mapper.closed:
                chunks += mapper.stopped()
            if sending:
                if chunks or terminal:
                    yield ui_frame(chunks, position, done=terminal) + notice
                    notice = b""
            elif position == after:
                sending = True
                if terminal:
                    yield DONE  # the client has the whole answer: only the end is left
            if terminal:
                return
        # the log closed without a terminal event: the answer was cut short
        if mapper is not None and not mapper.closed:
            yield ui_frame(mapper.stopped(), done=True) if sending else DONE
        else:
            yield DONE
    except Exception as exc:  # the store failed, or the answer was replaced while we read
        yield _failure_frame(mapper, exc)
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def event_frames(run: RunningRequest) -> AsyncIterator[bytes]:
    """`/v1/stream`: every event as one SSE message, batched like the UI stream."""
    try:
        batch: list[bytes] = []
        with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
            async for ev in run.events():
                ev = run.terminal(ev)
                if ev.type == EventType.ERROR and isinstance(ev.value, str):  # the one redaction, again here
                    ev = Event(redact(ev.value), ev.type, ev.level, ev.metadata, id=ev.id, timestamp=ev.epoch)
                batch.append(event_frame(ev))
                if not run.pending():
                    yield batch[0] if len(batch) == 1 else b"".join(batch)
                    batch.clear()
        if batch:
            yield b"".join(batch)
    finally:
        run.cancel()
