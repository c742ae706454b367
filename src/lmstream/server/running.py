"""One request running for one HTTP response, behind the smallest seam the server needs.

`start_request` is the only place that knows how a request is started; the server only uses
`events()`, `cancel()` and `aclose()`. (It drives `process(..., event_emitter=...)` in a task;
switching to `processor.stream(...)` changes this function only.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..events import Event, EventEmitter
from ..processor import LMRequestProcessor

__all__ = ["RunningRequest", "start_request"]


def _retrieve(task: asyncio.Task[Any]) -> None:
    """The failure already went out as an `error` event; mark it seen so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class RunningRequest:
    """A request in its own task. `cancel()` is synchronous on purpose: it is safe to call from a
    frame that is itself being cancelled (a client that left), where an `await` would not run."""

    __slots__ = ("_handler", "emitter", "task")

    def __init__(self, emitter: EventEmitter, task: asyncio.Task[Any]) -> None:
        self.emitter = emitter
        self._handler = emitter.stream_handler
        self.task = task
        task.add_done_callback(_retrieve)

    def events(self) -> AsyncIterator[Event]:
        """This request's events in order; ends after `done`, `error` or a cancellation."""
        return self.emitter.stream()

    def pending(self) -> int:
        """Events already waiting: the next `events()` step returns without waiting."""
        return len(self._handler)

    def cancel(self) -> None:
        """Stop the request now: the provider connection is closed as the task unwinds."""
        self.task.cancel()

    @property
    def done(self) -> bool:
        return self.task.done()

    async def aclose(self) -> None:
        """Cancel if still running, wait for the task to unwind (bounded), release the emitter."""
        self.task.cancel()
        await asyncio.wait([self.task], timeout=5.0)
        await self.emitter.close()


def start_request(processor: LMRequestProcessor, **kwargs: Any) -> RunningRequest:
    """Start `processor` on one request (`prompt_kwargs`, `history`, ... as for `process()`)."""
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(processor.process(event_emitter=emitter, **kwargs))
    return RunningRequest(emitter, task)
