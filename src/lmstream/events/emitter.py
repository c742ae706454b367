"""The emitter: fans each event out to its handlers, and nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from .event import Event, EventLevel, EventType
from .handlers import BaseEventHandler, ConsoleEventHandler, PrintEventHandler
from .stream import StreamEventHandler
from .tracker import RequestTracker

__all__ = ["EventEmitter", "Hook"]

logger = logging.getLogger("lmstream")

Hook = Callable[[Event], Awaitable[Event]]
T = TypeVar("T")


class _WatchedList(list[T]):
    """A list that tells its owner when it changes, so the emitter's fast path stays current."""

    def __init__(self, items: Iterable[T], on_change: Callable[[], None]) -> None:
        super().__init__(items)
        self._on_change = on_change


def _notifying(name: str) -> Any:
    base = getattr(list, name)

    def method(self: _WatchedList[Any], *args: Any, **kwargs: Any) -> Any:
        result = base(self, *args, **kwargs)
        self._on_change()
        return result

    method.__name__ = name
    return method


for _name in (
    "append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):  # fmt: skip
    setattr(_WatchedList, _name, _notifying(_name))


class EventEmitter:
    """Fans events out to handlers, drops those below `event_level`, applies hooks first.

    `handlers` and `hooks` are live lists: appending to them (or `add_handler`/`add_hook`)
    takes effect for the next event. A handler that raises is logged and skipped, unless it
    was created with `raise_errors=True`.

    Blocking handlers: an async handler gets `handler_timeout` seconds (default 5) per event;
    past that the call is cancelled and treated like a raise, so a stuck handler delays a
    request by at most that much per event and never stalls it forever. Built-in handlers
    never block. A synchronous callback runs on the event loop: keep it quick.

    `tracker` knows which requests use this emitter; `stream()` ends when they have finished.
    """

    def __init__(
        self,
        handlers: Sequence[BaseEventHandler] | None = None,
        event_level: EventLevel | int = EventLevel.INFO,
        hooks: Sequence[Hook] | None = None,
        handler_timeout: float | None = 5.0,
    ) -> None:
        self.handler_timeout = handler_timeout
        self.event_level = EventLevel(event_level)
        self.tracker = RequestTracker()
        self.tracker.on_cancelled_before_start = self._cancelled_before_start
        self._closed = False
        self._handlers: _WatchedList[BaseEventHandler] = _WatchedList(handlers or [], self._refresh)
        self._hooks: _WatchedList[Hook] = _WatchedList(hooks or [], self._refresh)
        self._refresh()

    @property
    def handlers(self) -> list[BaseEventHandler]:
        return self._handlers

    @handlers.setter
    def handlers(self, handlers: Sequence[BaseEventHandler]) -> None:
        self._handlers = _WatchedList(handlers, self._refresh)
        self._refresh()

    @property
    def hooks(self) -> list[Hook]:
        return self._hooks

    @hooks.setter
    def hooks(self, hooks: Sequence[Hook]) -> None:
        self._hooks = _WatchedList(hooks, self._refresh)
        self._refresh()

    def _refresh(self) -> None:
        for h in self._handlers:
            if isinstance(h, StreamEventHandler):
                h.watch(self.tracker)
        self._sync_calls = [h.emit_nowait for h in self._handlers]
        self._all_sync = not self._hooks and all(h.is_sync for h in self._handlers)

    @property
    def all_sync(self) -> bool:
        """No hooks and only synchronous handlers: events may be delivered with `dispatch_nowait`."""
        return self._all_sync

    @property
    def closed(self) -> bool:
        return self._closed

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
        self._handlers.append(handler)

    def add_hook(self, hook: Hook) -> None:
        self._hooks.append(hook)

    @property
    def stream_handler(self) -> StreamEventHandler:
        for h in self._handlers:
            if isinstance(h, StreamEventHandler):
                return h
        from ..errors import ConfigurationError

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
            for h in self._handlers:
                if h.name not in skip:
                    await self._call_async(h, event)
            return
        await self.dispatch(event)

    def dispatch_nowait(self, event: Event) -> None:
        """Deliver without awaiting; valid only when `all_sync` (no hooks, sync handlers)."""
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
        for h in self._handlers:
            await self._call_async(h, event)

    async def deliver_bounded(self, event: Event, seconds: float) -> None:
        """Deliver a final event: sync handlers at once, each async one for at most `seconds`."""
        if event.level < self.event_level:
            return
        # failures are logged, never raised: this runs while a request is being torn down
        for h in self._handlers:
            if h.is_sync:
                try:
                    h.emit_nowait(event)
                except Exception as exc:
                    logger.error("event handler %r raised %s: %s (ignored)", h.name, type(exc).__name__, exc)
        for h in self._handlers:
            if not h.is_sync:
                try:
                    async with asyncio.timeout(seconds):
                        await h.emit(event)
                except Exception as exc:
                    logger.error("event handler %r raised %s: %s (ignored)", h.name, type(exc).__name__, exc)

    async def _apply_hooks(self, event: Event) -> Event:
        """Run hooks in order; a hook that raises is logged and skipped (the event goes on)."""
        for hook in self._hooks:
            try:
                event = await hook(event)
            except Exception as exc:
                logger.error(
                    "event hook %r raised %s: %s (ignored)", getattr(hook, "__name__", hook), type(exc).__name__, exc
                )
        return event

    async def _call_async(self, h: BaseEventHandler, event: Event) -> None:
        try:
            if h.is_sync:
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

    def _cancelled_before_start(self, request_id: str) -> None:
        event = Event(
            "request cancelled before it started",
            EventType.ERROR,
            EventLevel.ERROR,
            {"request_id": request_id, "error_type": "CancelledError"},
        )
        for h in self._handlers:
            if h.is_sync:
                try:
                    h.emit_nowait(event)
                except Exception as exc:
                    self._handler_failed(h, exc)

    # ----- consuming
    def stream(
        self,
        types: str | Iterable[str] | None = None,
        min_level: EventLevel | int | None = None,
        until_closed: bool = False,
    ) -> AsyncIterator[Event]:
        """Iterate the stream handler's events (rules in `StreamEventHandler.stream`).

        (JSON strings instead, if the handler was made with `serialize=True`.)

        Ends when every request using this emitter has finished, or, with
        `until_closed=True`, only when the emitter is closed.
        """
        stream: AsyncIterator[Event] = self.stream_handler.stream(types, min_level, until_closed)
        return stream

    async def close(self) -> None:
        """Close every handler (idempotent); ends any `stream()`. A closed emitter takes no new requests."""
        if self._closed:
            return
        self._closed = True
        for h in self._handlers:
            try:
                await h.close()
            except Exception as exc:
                self._handler_failed(h, exc)

    def __repr__(self) -> str:
        names = ", ".join(h.name for h in self._handlers)
        return f"EventEmitter(handlers=[{names}], event_level={self.event_level.name})"
