"""One generation shared by every identical request that arrives while it runs.

The generation runs in a task of its own, recording its events; every request for it, the
first included, is a reader that replays the record from the start and then follows it live.
A reader that leaves does not stop the others; when the last one leaves, the generation is
cancelled (its provider connection closed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..engine.lifecycle import RequestContext
from ..events import BaseEventHandler, Event
from ..types import LMOutput
from .entry import Record
from .replay import Replayer

__all__ = ["Flight", "Recorder"]


class Flight:
    """A running generation: its record so far and, once over, its output or its error."""

    __slots__ = (
        "_wake",
        "attempts",
        "done",
        "error",
        "key",
        "output",
        "readers",
        "records",
        "run",
        "shared",
        "started",
        "task",
        "wall",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.records: list[Record] = []
        self.started = time.perf_counter()
        self.wall = time.time()
        self.done = False
        self.output: LMOutput | None = None
        self.error: BaseException | None = None
        self.readers = 0
        self.task: asyncio.Task[None] | None = None
        self.run: str | None = None  # with the Redis store: the run id other nodes follow
        self.shared = False  # its events go to Redis, where other nodes may be reading
        self.attempts: list[dict[str, Any]] = []  # the generation's model calls (a fallback chain's)
        self._wake = asyncio.Event()

    def append(self, event: Event) -> None:
        self.records.append((time.perf_counter() - self.started, event.type, event.value, event.level, event.metadata))
        self._poke()

    def finish(self, output: LMOutput | None, error: BaseException | None) -> None:
        self.output, self.error, self.done = output, error, True
        self._poke()

    async def changed(self) -> None:
        """Wait for the next event or the end."""
        await self._wake.wait()

    def poke(self) -> None:
        """Wake whoever waits on `changed()`."""
        self._poke()

    def _poke(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def follow(self, ctx: RequestContext) -> None:
        """Replay into `ctx` from the first event, then live, until the generation is over."""
        rep = Replayer(ctx)
        i = 0
        while True:
            records = self.records
            while i < len(records):
                _, type_, value, level, meta = records[i]
                i += 1
                await rep.emit(type_, value, level, meta.get("block_id"), meta)
            if self.done:
                return
            await self._wake.wait()

    def leave(self) -> None:
        """A reader is gone: the last one out stops a generation still running, unless readers
        on other nodes follow it (then its publisher stops it once they have left too)."""
        self.readers -= 1
        if self.readers <= 0 and not self.done and self.task is not None:
            if self.shared:
                self._poke()  # the publisher looks for readers elsewhere
            else:
                self.task.cancel()


class Recorder(BaseEventHandler):
    """The generation's only handler: each event goes into the flight's record."""

    def __init__(self, flight: Any) -> None:
        super().__init__("cache-recorder")
        self._flight = flight

    def emit_nowait(self, event: Event) -> None:
        self._flight.append(event)
