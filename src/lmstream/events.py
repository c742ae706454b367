"""Typed events and the emitter that fans them out to handlers while a request runs.

The event path is the hot loop of the library: one `Event` per streamed token. `Event` is a
slotted object whose id and ISO timestamp are computed only when read; the emitter dispatches
to synchronous built-in handlers without creating a coroutine per token.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import IO, Any

from . import _json

__all__ = [
    "Event",
    "EventLevel",
    "EventType",
    "EventEmitter",
    "BaseEventHandler",
    "StreamEventHandler",
    "PrintEventHandler",
    "ConsoleEventHandler",
    "CallbackEventHandler",
]

logger = logging.getLogger("lmstream")


class EventLevel(IntEnum):
    """Ordered severity; serialised by name (`"INFO"`)."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5


class EventType(StrEnum):
    """Built-in event types. Any other string is a valid user-defined type."""

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
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    USAGE = "usage"
    ERROR = "error"
    DONE = "done"


# Deltas of these types may be merged by a StreamEventHandler whose consumer falls behind.
_MERGEABLE = frozenset({EventType.RESPONSE, EventType.THINKING, EventType.CODE})

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


# --------------------------------------------------------------------------- handlers


class BaseEventHandler:
    """Receives every event an emitter lets through. Subclass and override `emit`.

    Built-in handlers also implement `emit_nowait` so the emitter can call them without a
    coroutine per token; a subclass that only overrides `emit` is awaited as usual.
    """

    def __init__(self, name: str | None = None, raise_errors: bool = False) -> None:
        self.name = name or type(self).__name__
        self.raise_errors = raise_errors

    async def emit(self, event: Event) -> None:
        self.emit_nowait(event)

    def emit_nowait(self, event: Event) -> None:
        """Synchronous delivery; only called when the handler declares it (built-ins do)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources; the emitter calls it from `close()`."""

    def _requests_finished(self) -> None:
        """Every request the emitter watched has finished (used by the stream handler)."""

    @property
    def _is_sync(self) -> bool:
        cls = type(self)
        return cls.emit is BaseEventHandler.emit and cls.emit_nowait is not BaseEventHandler.emit_nowait


class _Merged:
    """A run of adjacent deltas merged while the consumer lagged (joined once, at read time)."""

    __slots__ = ("first", "parts")

    def __init__(self, first: Event) -> None:
        self.first = first
        self.parts: list[str] = [first.value]  # type: ignore[list-item]

    def build(self) -> Event:
        f = self.first
        meta = dict(f.metadata)
        meta["coalesced"] = len(self.parts)
        return Event("".join(self.parts), f.type, f.level, meta, id=f.id, timestamp=f._ts)


_END = object()  # queued when every watched request has finished


class StreamEventHandler(BaseEventHandler):
    """Buffers events for `stream()`.

    Memory stays bounded however slowly the consumer reads: once `max_buffer` events are
    waiting, each new text delta (`response`, `thinking`, `code`) is merged into the waiting
    delta of the same block instead of queued, so the buffer holds at most `max_buffer` items
    plus one per non-text event (a handful per request), and the merged text is no more than
    the request's own output. Nothing is dropped, order is kept, and the request never waits
    for the consumer. A consumer that resumes reads every event, merged runs marked with
    `metadata["coalesced"]` (how many deltas were merged).

    `serialize=True` makes `stream()` yield each event's JSON string (the seed guide's form).
    One consumer at a time.
    """

    def __init__(
        self,
        name: str | None = None,
        serialize: bool = False,
        max_buffer: int = 4096,
        raise_errors: bool = False,
    ) -> None:
        super().__init__(name, raise_errors)
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.serialize = serialize
        self.max_buffer = max_buffer
        self._buf: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.coalesced = 0  # how many deltas were merged into earlier ones (observability)
        self._owner: EventEmitter | None = None

    def __len__(self) -> int:
        return len(self._buf)

    def emit_nowait(self, event: Event) -> None:
        buf = self._buf
        if len(buf) >= self.max_buffer and event.type in _MERGEABLE and buf:
            tail = buf[-1]
            first = tail.first if tail.__class__ is _Merged else tail
            if (
                first.__class__ is Event
                and first.type == event.type
                and first.metadata.get("block_id") == event.metadata.get("block_id")
                and first.metadata.get("request_id") == event.metadata.get("request_id")
                and isinstance(event.value, str)
            ):
                if tail.__class__ is not _Merged:
                    tail = _Merged(tail)
                    buf[-1] = tail
                tail.parts.append(event.value)
                self.coalesced += 1
                return
        buf.append(event)
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    def _requests_finished(self) -> None:
        self._buf.append(_END)
        self._wake()

    async def close(self) -> None:
        self._closed = True
        self._wake()

    async def stream(
        self,
        types: str | Iterable[str] | None = None,
        min_level: EventLevel | int | None = None,
    ) -> AsyncIterator[Any]:
        """Yield events as they arrive; ends when the watched requests finish or on `close()`.

        `types` keeps only those event types; `min_level` drops events below that level.
        """
        type_set: frozenset[str] | None
        if types is None:
            type_set = None
        elif isinstance(types, str):
            type_set = frozenset({types})
        else:
            type_set = frozenset(types)
        level_floor = int(min_level) if min_level is not None else None
        buf = self._buf
        serialize = self.serialize
        loop = asyncio.get_running_loop()
        while True:
            if buf:
                item = buf.popleft()
                if item is _END:
                    return
                if item.__class__ is _Merged:
                    item = item.build()
                if type_set is not None and item.type not in type_set:
                    continue
                if level_floor is not None and item.level < level_floor:
                    continue
                yield item.to_json() if serialize else item
            elif self._closed:
                return
            else:
                fut = loop.create_future()
                self._waiter = fut
                owner = self._owner
                try:
                    if owner is not None and owner._pending:
                        # a request is registered but has not started: if its task is cancelled
                        # before its first step no code of it ever runs, so look every 0.1 s
                        try:
                            async with asyncio.timeout(0.1):
                                await fut
                        except TimeoutError:
                            owner._sweep_pending()
                    else:
                        await fut
                finally:
                    if self._waiter is fut:
                        self._waiter = None


class PrintEventHandler(BaseEventHandler):
    """Plain text, one line per event: timestamp, level, type, value."""

    def __init__(self, name: str | None = None, file: IO[str] | None = None, raise_errors: bool = False) -> None:
        super().__init__(name, raise_errors)
        self._file = file

    def emit_nowait(self, event: Event) -> None:
        out = self._file or sys.stdout
        value = event.value if isinstance(event.value, str) else _json.dumps(event.value)
        out.write(f"{event.timestamp.isoformat()} {EventLevel(event.level).name} {event.type} {value!r}\n")


_COLOURS = {
    EventType.THINKING: "\x1b[2m",
    EventType.THINKING_START: "\x1b[2;3m",
    EventType.THINKING_END: "\x1b[2;3m",
    EventType.TOOL_CALL: "\x1b[36m",
    EventType.TOOL_RESULT: "\x1b[36m",
    EventType.ERROR: "\x1b[31m",
    EventType.DONE: "\x1b[32m",
    EventType.DATA: "\x1b[35m",
}


class ConsoleEventHandler(BaseEventHandler):
    """Human-readable: answer text flows inline, other events on their own coloured line."""

    def __init__(
        self,
        name: str | None = None,
        file: IO[str] | None = None,
        colour: bool | None = None,
        raise_errors: bool = False,
    ) -> None:
        super().__init__(name, raise_errors)
        self._file = file
        self._colour = colour
        self._inline = False  # the cursor is mid-line after response/thinking text

    def emit_nowait(self, event: Event) -> None:
        out = self._file or sys.stdout
        colour = self._colour if self._colour is not None else out.isatty()
        t = event.type
        if t == EventType.RESPONSE or t == EventType.THINKING or t == EventType.CODE:
            text = event.value if isinstance(event.value, str) else _json.dumps(event.value)
            code = _COLOURS.get(t)  # type: ignore[call-overload]
            out.write(f"{code}{text}\x1b[0m" if colour and code else text)
            out.flush()
            self._inline = True
            return
        if self._inline:
            out.write("\n")
            self._inline = False
        value = event.value if isinstance(event.value, str) else _json.dumps(event.value)
        line = f"[{t}] {value}" if value else f"[{t}]"
        if t == EventType.DONE:
            meta = event.metadata
            usage = meta.get("usage") or {}
            line = (
                f"[done] finish_reason={meta.get('finish_reason')} "
                f"in={usage.get('input_tokens', 0)} out={usage.get('output_tokens', 0)} "
                f"ttft={_fmt_s(meta.get('time_to_first_token'))} duration={_fmt_s(meta.get('duration'))}"
            )
        code = _COLOURS.get(t)  # type: ignore[call-overload]
        out.write(f"{code}{line}\x1b[0m\n" if colour and code else line + "\n")
        out.flush()


def _fmt_s(v: Any) -> str:
    return f"{v:.3f}s" if isinstance(v, (int, float)) else "-"


class CallbackEventHandler(BaseEventHandler):
    """Calls a user function (sync or async) with each event."""

    def __init__(
        self,
        callback: Callable[[Event], Any],
        name: str | None = None,
        raise_errors: bool = False,
    ) -> None:
        super().__init__(name or getattr(callback, "__name__", None), raise_errors)
        self._callback = callback
        # an object whose __call__ is async counts too (iscoroutinefunction misses it)
        self._async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - the method object itself is wanted
        )

    @property
    def _is_sync(self) -> bool:
        return not self._async

    def emit_nowait(self, event: Event) -> None:
        self._callback(event)

    async def emit(self, event: Event) -> None:
        r = self._callback(event)
        if inspect.isawaitable(r):
            await r


Hook = Callable[[Event], Awaitable[Event]]


# --------------------------------------------------------------------------- emitter


class EventEmitter:
    """Fans events out to handlers, drops those below `event_level`, applies hooks first.

    Requests register with the emitter while they run; when the last one finishes, `stream()`
    ends after delivering every event. A handler that raises is logged and skipped, unless it
    was created with `raise_errors=True`.

    Blocking handlers: an async handler gets `handler_timeout` seconds (default 5) per event;
    past that the call is cancelled and treated like a raise (logged and skipped, or raised
    with `raise_errors=True`), so a stuck handler delays a request by at most that much per
    event and never stalls it forever. Built-in handlers never block. A synchronous callback
    runs on the event loop: keep it quick.
    """

    def __init__(
        self,
        handlers: Sequence[BaseEventHandler] | None = None,
        event_level: EventLevel | int = EventLevel.INFO,
        hooks: Sequence[Hook] | None = None,
        handler_timeout: float | None = 5.0,
    ) -> None:
        self.handlers: list[BaseEventHandler] = list(handlers or [])
        self.handler_timeout = handler_timeout
        self.event_level = EventLevel(event_level)
        self.hooks: list[Hook] = list(hooks or [])
        self._active = 0
        self._pending: dict[object, Any] = {}  # registered requests whose coroutine has not started
        self._closed = False
        self._refresh()

    def _refresh(self) -> None:
        for h in self.handlers:
            if isinstance(h, StreamEventHandler):
                h._owner = self
        self._sync_calls = [h.emit_nowait for h in self.handlers]
        self._all_sync = not self.hooks and all(h._is_sync for h in self.handlers)

    # ----- constructors
    @classmethod
    def with_stream_handler(
        cls, event_level: EventLevel | int = EventLevel.INFO, serialize: bool = False, max_buffer: int = 4096
    ) -> EventEmitter:
        return cls([StreamEventHandler(serialize=serialize, max_buffer=max_buffer)], event_level)

    @classmethod
    def with_print_handler(cls, event_level: EventLevel | int = EventLevel.INFO) -> EventEmitter:
        return cls([PrintEventHandler()], event_level)

    @classmethod
    def with_console_handler(cls, event_level: EventLevel | int = EventLevel.INFO) -> EventEmitter:
        return cls([ConsoleEventHandler()], event_level)

    def add_handler(self, handler: BaseEventHandler) -> None:
        self.handlers.append(handler)
        self._refresh()

    @property
    def stream_handler(self) -> StreamEventHandler:
        for h in self.handlers:
            if isinstance(h, StreamEventHandler):
                return h
        from .errors import ConfigurationError

        raise ConfigurationError(
            "this EventEmitter has no StreamEventHandler; create it with "
            "EventEmitter.with_stream_handler() or pass StreamEventHandler() in its handlers"
        )

    # ----- emitting
    async def emit(
        self,
        value: Any,
        type: str = EventType.RESPONSE,
        level: EventLevel | int = EventLevel.INFO,
        metadata: dict[str, Any] | None = None,
        disabled_handlers: Iterable[str] | None = None,
        *,
        event_type: str | None = None,
        event_level: EventLevel | int | None = None,
    ) -> None:
        """Emit a value (or a ready `Event`). `event_type`/`event_level` are accepted aliases."""
        if isinstance(value, Event):
            event = value
        else:
            event = Event(
                value,
                event_type if event_type is not None else type,
                EventLevel(event_level if event_level is not None else level),
                metadata,
            )
        if disabled_handlers:
            skip = set(disabled_handlers)
            if event.level < self.event_level:
                return
            event = await self._apply_hooks(event)
            for h in self.handlers:
                if h.name not in skip:
                    await self._call_async(h, event)
            return
        await self.dispatch(event)

    def dispatch_nowait(self, event: Event) -> None:
        """Deliver without awaiting; valid only when `_all_sync` (no hooks, sync handlers)."""
        if event.level < self.event_level:
            return
        for call in self._sync_calls:
            try:
                call(event)
            except Exception as exc:
                self._handler_failed(call.__self__, exc)  # type: ignore[attr-defined]

    async def dispatch(self, event: Event) -> None:
        """Deliver one event through hooks and every handler."""
        if self._all_sync:
            self.dispatch_nowait(event)
            return
        if event.level < self.event_level:
            return
        event = await self._apply_hooks(event)
        for h in self.handlers:
            await self._call_async(h, event)

    async def deliver_bounded(self, event: Event, seconds: float) -> None:
        """Deliver a final event: sync handlers at once, each async one for at most `seconds`."""
        if event.level < self.event_level:
            return
        # failures are logged, never raised: this runs while a request is being torn down
        for h in self.handlers:
            if h._is_sync:
                try:
                    h.emit_nowait(event)
                except Exception as exc:
                    logger.error("event handler %r raised %s: %s (ignored)", h.name, type(exc).__name__, exc)
        for h in self.handlers:
            if not h._is_sync:
                try:
                    async with asyncio.timeout(seconds):
                        await h.emit(event)
                except Exception as exc:
                    logger.error("event handler %r raised %s: %s (ignored)", h.name, type(exc).__name__, exc)

    async def _apply_hooks(self, event: Event) -> Event:
        """Run hooks in order; a hook that raises is logged and skipped (the event goes on)."""
        for hook in self.hooks:
            try:
                event = await hook(event)
            except Exception as exc:
                logger.error(
                    "event hook %r raised %s: %s (ignored)", getattr(hook, "__name__", hook), type(exc).__name__, exc
                )
        return event

    async def _call_async(self, h: BaseEventHandler, event: Event) -> None:
        try:
            if h._is_sync:
                h.emit_nowait(event)
            elif self.handler_timeout is None:
                await h.emit(event)
            else:
                async with asyncio.timeout(self.handler_timeout):
                    await h.emit(event)
        except Exception as exc:
            self._handler_failed(h, exc)

    def _handler_failed(self, handler: BaseEventHandler, exc: Exception) -> None:
        if isinstance(exc, TimeoutError):
            exc = TimeoutError(f"handler {handler.name!r} took longer than handler_timeout={self.handler_timeout}s")
        if handler.raise_errors:
            raise exc
        logger.error("event handler %r raised %s: %s (ignored)", handler.name, type(exc).__name__, exc)

    # ----- request lifecycle (driven by the processor / invoker)
    def _begin_request(self) -> None:
        self._active += 1

    def _register(self, token: object, coro: Any) -> None:
        """Count a request from the moment `process()` is called, before its task runs.

        `token` identifies the request (its `request_id` attribute, if any, tags the event sent
        when it turns out to have been cancelled before it started)."""
        self._active += 1
        self._pending[token] = coro

    def _started(self, token: object) -> None:
        self._pending.pop(token, None)

    def _sweep_pending(self) -> None:
        """End requests whose coroutine was closed before it ever ran (task cancelled early)."""
        for token, coro in list(self._pending.items()):
            if inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED:
                del self._pending[token]
                event = Event(
                    "request cancelled before it started",
                    EventType.ERROR,
                    EventLevel.ERROR,
                    {"request_id": getattr(token, "request_id", None), "error_type": "CancelledError"},
                )
                for h in self.handlers:
                    if h._is_sync:
                        try:
                            h.emit_nowait(event)
                        except Exception as exc:
                            self._handler_failed(h, exc)
                self._end_request()

    def _end_request(self) -> None:
        self._active -= 1
        if self._active <= 0:
            self._active = 0
            for h in self.handlers:
                h._requests_finished()

    # ----- consuming
    def stream(
        self,
        types: str | Iterable[str] | None = None,
        min_level: EventLevel | int | None = None,
    ) -> AsyncIterator[Any]:
        """Iterate events of the stream handler; ends when the watched requests finish."""
        return self.stream_handler.stream(types=types, min_level=min_level)

    async def close(self) -> None:
        """Close every handler (idempotent); ends any `stream()`."""
        if self._closed:
            return
        self._closed = True
        for h in self.handlers:
            try:
                await h.close()
            except Exception as exc:
                self._handler_failed(h, exc)

    def __repr__(self) -> str:
        names = ", ".join(h.name for h in self.handlers)
        return f"EventEmitter(handlers=[{names}], event_level={self.event_level.name})"
