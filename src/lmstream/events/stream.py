"""The handler behind `stream()`: a bounded buffer between a request and its consumer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

from .event import Event, EventLevel, EventType
from .handlers import BaseEventHandler
from .tracker import RequestTracker

__all__ = ["StreamEventHandler"]

# Deltas of these types may be merged by a StreamEventHandler whose consumer falls behind.
_MERGEABLE = frozenset({EventType.RESPONSE, EventType.THINKING, EventType.CODE})


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
        return Event("".join(self.parts), f.type, f.level, meta, id=f.id, timestamp=f.epoch)


_END = object()  # queued when every watched request has finished


class StreamEventHandler(BaseEventHandler):
    """Buffers events for `stream()`.

    Memory stays bounded however slowly the consumer reads: once `max_buffer` events are
    waiting, each new text delta (`response`, `thinking`, `code`) is merged into the waiting
    delta of the same block instead of queued, so the buffer holds at most `max_buffer` items
    plus one per non-text event (a handful per request), and the merged text is no more than
    the request's own output. Nothing is dropped, order is kept, and the request never waits
    for the consumer. Merged runs carry `metadata["coalesced"]` (how many deltas were merged).

    Lifetime rules (see `stream()`): one consumer at a time; a consumer that leaves early
    takes its requests' remaining events with it, so the next `stream()` starts clean.

    `serialize=True` makes `stream()` yield each event's JSON string (the form GLLM's streaming guide reads).
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
        self._consuming = False
        self._abandoned: set[str] = set()  # requests whose consumer left: their events are dropped
        self._tracker: RequestTracker | None = None
        self.coalesced = 0  # how many deltas were merged into earlier ones (observability)

    def __len__(self) -> int:
        return len(self._buf)

    def watch(self, tracker: RequestTracker) -> None:
        """Follow a tracker's requests: `stream()` ends when the last one finishes."""
        self._tracker = tracker
        tracker.add_listener(self)

    def emit_nowait(self, event: Event) -> None:
        if self._abandoned and event.metadata.get("request_id") in self._abandoned:
            return
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

    def request_finished(self, request_id: str, tracker: RequestTracker) -> None:
        if request_id in self._abandoned:
            self._abandoned.discard(request_id)
            if not self._consuming:
                return  # nobody is waiting for it: leave no stale end marker behind
        if tracker.active_ids() <= self._abandoned:
            self._buf.append(_END)
            self._wake()

    async def close(self) -> None:
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def stream(
        self,
        types: str | Iterable[str] | None = None,
        min_level: EventLevel | int | None = None,
        until_closed: bool = False,
    ) -> AsyncIterator[Any]:
        """Yield events as they arrive.

        By default the stream ends once every request the emitter watches has finished (a
        request counts from the `process()` call that creates it). `until_closed=True` keeps
        it open across requests (one task running several `process()` calls in a row) until
        the emitter is closed. `types` keeps only those event types; `min_level` drops events
        below that level. A second concurrent consumer raises `RuntimeError` at once. A
        consumer that stops early (break, an exception) discards what was left of the requests
        it watched, so the next `stream()` sees only newer requests.
        """
        type_set: frozenset[str] | None
        if types is None:
            type_set = None
        elif isinstance(types, str):
            type_set = frozenset({types})
        else:
            type_set = frozenset(types)
        return _Reader(self, type_set, int(min_level) if min_level is not None else None, until_closed)

    async def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        tracker = self._tracker
        try:
            if tracker is not None and tracker.pending:
                # a request is registered but has not started: if its task is cancelled before
                # its first step no code of it ever runs, so look every 0.1 s
                try:
                    async with asyncio.timeout(0.1):
                        await fut
                except TimeoutError:
                    tracker.sweep()
            else:
                await fut
        finally:
            if self._waiter is fut:
                self._waiter = None

    def _abandon(self) -> None:
        """The consumer left early: drop what is buffered and what its requests still send."""
        self._buf.clear()
        if self._tracker is not None:
            self._abandoned |= self._tracker.active_ids()


class _Reader:
    """One consumer of a `StreamEventHandler`.

    A class rather than an async generator so that leaving an `async for` early releases
    the handler at once (CPython drops the iterator when the loop exits), not whenever the
    event loop gets round to finalizing an abandoned generator.
    """

    __slots__ = ("_done", "_handler", "_level_floor", "_started", "_type_set", "_until_closed")

    def __init__(
        self, handler: StreamEventHandler, type_set: frozenset[str] | None, level_floor: int | None, until_closed: bool
    ) -> None:
        self._handler = handler
        self._type_set = type_set
        self._level_floor = level_floor
        self._until_closed = until_closed
        self._started = False
        self._done = False

    def __aiter__(self) -> _Reader:
        return self

    async def __anext__(self) -> Any:
        h = self._handler
        if not self._started:
            if self._done:
                raise StopAsyncIteration
            if h._consuming:
                raise RuntimeError(
                    "this StreamEventHandler already has a consumer: one stream() at a time; use "
                    "lmrp.stream(...) for one stream per request, or a CallbackEventHandler per audience"
                )
            h._consuming = True
            self._started = True
        buf = h._buf
        type_set = self._type_set
        level_floor = self._level_floor
        while True:
            if buf:
                item = buf.popleft()
                if item is _END:
                    if self._until_closed:
                        continue
                    self._finish(early=False)
                    raise StopAsyncIteration
                if item.__class__ is _Merged:
                    item = item.build()
                if type_set is not None and item.type not in type_set:
                    continue
                if level_floor is not None and item.level < level_floor:
                    continue
                return item.to_json() if h.serialize else item
            if h._closed:
                self._finish(early=False)
                raise StopAsyncIteration
            if self._done:
                raise StopAsyncIteration
            await h._wait(asyncio.get_running_loop())

    def _finish(self, early: bool) -> None:
        if self._started and not self._done:
            self._handler._consuming = False
            if early:
                self._handler._abandon()
        self._done = True
        self._started = False

    async def aclose(self) -> None:
        """Stop consuming; the requests it watched lose their remaining events."""
        self._finish(early=True)
        self._handler._wake()

    def __del__(self) -> None:
        self._finish(early=True)
