"""One stream per request: `async with lmrp.stream(...) as stream: async for event in stream`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..errors import LMStreamError
from ..events import BaseEventHandler, Event, EventEmitter, EventType, StreamEventHandler
from .approvals import answer
from .lifecycle import RequestContext, check_open

__all__ = ["RequestStream"]

T = TypeVar("T")


class _Forward(BaseEventHandler):
    """Hands a request's events on to a user's emitter too (one request, two audiences)."""

    def __init__(self, target: EventEmitter) -> None:
        super().__init__("forward")
        self._target = target

    @property
    def is_sync(self) -> bool:
        return self._target.all_sync

    def emit_nowait(self, event: Event) -> None:
        self._target.dispatch_nowait(event)

    async def emit(self, event: Event) -> None:
        await self._target.dispatch(event)


class RequestStream(Generic[T]):
    """The events of exactly one request, in order, then its result.

    The request starts when the `async with` block is entered (or on first iteration). The
    stream ends after `done`; on failure it yields the `error` event and then raises the
    request's typed exception (`result()` raises it too). Leaving early (`break`, an
    exception, `aclose()`) cancels the request at once: the provider connection is closed
    and local generation stops. Memory stays bounded for a slow reader (text deltas of one
    block merge, as in `StreamEventHandler`).
    """

    def __init__(
        self,
        start: Callable[[RequestContext], Coroutine[Any, Any, T]],
        event_emitter: EventEmitter | None = None,
        max_buffer: int = 4096,
    ) -> None:
        check_open(event_emitter)
        self._handler = StreamEventHandler(max_buffer=max_buffer)
        handlers: list[BaseEventHandler] = [self._handler]
        if event_emitter is not None:
            handlers.append(_Forward(event_emitter))
        self._emitter = EventEmitter(handlers, handler_timeout=None)
        trackers = [self._emitter.tracker]
        if event_emitter is not None:
            trackers.append(event_emitter.tracker)
        self._ctx = RequestContext(self._emitter, trackers)
        self._start_fn = start
        self._task: asyncio.Task[T] | None = None
        self._events: AsyncIterator[Event] | None = None
        self._closed_early = False

    @property
    def request_id(self) -> str:
        return self._ctx.request_id

    def _start(self) -> asyncio.Task[T]:
        if self._task is None:
            coro = self._start_fn(self._ctx)
            self._ctx.register(coro)
            self._task = asyncio.create_task(coro)
        return self._task

    # ----- async context manager
    async def __aenter__(self) -> RequestStream[T]:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ----- async iterator
    def __aiter__(self) -> RequestStream[T]:
        return self

    async def __anext__(self) -> Event:
        task = self._start()
        if self._events is None:
            self._events = self._handler.stream()
        try:
            return await self._events.__anext__()
        except StopAsyncIteration:
            if not self._closed_early:
                await self._outcome(task)  # raises the request's exception, if it failed
            raise

    async def text(self) -> AsyncIterator[str]:
        """The answer's text deltas only."""
        async for event in self:
            if event.type == EventType.RESPONSE and isinstance(event.value, str):
                yield event.value

    async def result(self) -> T:
        """The request's output (the parser's value when the processor has one)."""
        return await self._outcome(self._start())

    async def _outcome(self, task: asyncio.Task[T]) -> T:
        if self._closed_early:
            raise LMStreamError("the request was cancelled: its stream was closed before it finished")
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _being_cancelled():
                raise LMStreamError("the request was cancelled before it finished") from None
            raise

    def approve(self, approval_id: str) -> None:
        """Let a call waiting in this request's `tool_approval_request` run.

        Raises `lmstream.approval.ApprovalError` for an id that is not waiting here or was
        already answered (409), or timed out (410)."""
        answer(approval_id, True, request_id=self.request_id)

    def deny(self, approval_id: str, reason: str | None = None) -> None:
        """Refuse a waiting call: it never runs and the model is told why (`reason`)."""
        answer(approval_id, False, reason, request_id=self.request_id)

    def cancel(self) -> None:
        """Cancel the request now, without waiting: safe where an `await` cannot run (a frame that
        is itself being cancelled, e.g. a server's response to a client that left). The stream
        then ends, without raising, once the request has unwound and its connection is closed."""
        task = self._task
        if task is not None and not task.done():
            self._closed_early = True
            task.cancel()

    def __len__(self) -> int:
        """Events already waiting: the next step returns them without waiting."""
        return len(self._handler)

    async def aclose(self) -> None:
        """Stop reading; a request still running is cancelled and waited for (connection closed)."""
        task = self._task
        events = self._events
        if events is not None:
            self._events = None
            await events.aclose()  # type: ignore[attr-defined]
        if task is None or task.done():
            return
        self._closed_early = True
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
        except Exception:
            pass  # the request failed while being cancelled: its error event already went out

    def __repr__(self) -> str:
        state = "new" if self._task is None else ("done" if self._task.done() else "running")
        return f"RequestStream(request_id={self.request_id!r}, {state})"


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
