"""`InMemoryChatRegistry`: the chats of one process, for stop and resume (the default registry).

Answers run inside their HTTP response (`InlineChatRegistry`); each one's events are kept in a
bounded list while it runs, so `GET /api/chat/{id}/stream` can replay and follow it. Positions
are ``<answer>-<n>`` (the n-th event of the answer-th answer of this process), so a position of
an older answer is recognised as gone instead of naming some event of the new one.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable

from ..chat_registry import ChatLog, InlineChatRegistry, Positioned
from ..errors import StreamGoneError
from ..events import Event

__all__ = ["DEFAULT_MAX_EVENTS", "InMemoryChatRegistry", "MemoryChatLog"]

#: events kept per answer (like the Redis stream's MAXLEN); past it the oldest go, and the
#: answer can no longer be resumed (a replay needs its start), but it still streams to its client
DEFAULT_MAX_EVENTS = 10_000

_POSITION = re.compile(r"([0-9]{1,18})-([0-9]{1,18})")
_answers = itertools.count(1)


def _parse(position: str) -> tuple[str, int]:
    m = _POSITION.fullmatch(position.strip())
    if m is None:
        raise StreamGoneError(f"Last-Event-ID: {position[:40]!r} is not a stream position")
    return m.group(1), int(m.group(2))


class MemoryChatLog(ChatLog):
    """One answer's events in a list; readers follow with one shared wake-up future."""

    __slots__ = ("_closed", "_on_close", "_waiter", "answer", "base", "events", "max_events", "stop")

    def __init__(self, stop: Callable[[], None], on_close: Callable[[MemoryChatLog], None], max_events: int) -> None:
        self.answer = str(next(_answers))
        self.events: list[Event] = []
        self.base = 0  # events trimmed from the front
        self.max_events = max_events
        self.stop = stop
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close

    def write(self, event: Event) -> str:
        events = self.events
        events.append(event)
        if len(events) > self.max_events:  # drop the older half at once: amortised O(1)
            drop = len(events) - self.max_events // 2
            del events[:drop]
            self.base += drop
        self._wake()
        return f"{self.answer}-{self.base + len(events)}"

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._on_close(self)

    def check(self, position: str) -> None:
        """Raise unless `position` names an event of this answer that is still kept."""
        answer, n = _parse(position)
        if answer != self.answer or n < 1 or n > self.base + len(self.events):
            raise StreamGoneError(f"position {position} is not one of the running answer's; replay from the start")
        if self.base:
            raise StreamGoneError("this answer is too long to replay (its first events were dropped)")

    async def follow(self) -> AsyncIterator[Positioned]:
        """Every event from the first, then the new ones as they come, until the answer is over."""
        n = 0  # events yielded
        while True:
            if n < self.base:
                raise StreamGoneError("the answer's first events were dropped (too long to replay)")
            while n - self.base < len(self.events):
                ev = self.events[n - self.base]
                n += 1
                yield f"{self.answer}-{n}", ev
            if self._closed:
                return
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)


class InMemoryChatRegistry(InlineChatRegistry):
    """One process's running chats. Replay is from memory, so only this process can resume."""

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 2:
            raise ValueError("max_events must be at least 2")
        self.max_events = max_events
        self._runs: dict[str, MemoryChatLog] = {}

    def __len__(self) -> int:
        return len(self._runs)

    async def open(self, chat_id: str, stop: Callable[[], None]) -> ChatLog:
        earlier = self._runs.get(chat_id)
        if earlier is not None:
            earlier.stop()
        log = MemoryChatLog(stop, lambda closed: self._forget(chat_id, closed), self.max_events)
        self._runs[chat_id] = log
        return log

    def _forget(self, chat_id: str, log: MemoryChatLog) -> None:
        if self._runs.get(chat_id) is log:
            del self._runs[chat_id]

    async def stop(self, chat_id: str) -> bool:
        log = self._runs.get(chat_id)
        if log is None:
            return False
        log.stop()
        return True

    async def resume(self, chat_id: str, after: str | None = None) -> AsyncIterator[Positioned] | None:
        log = self._runs.get(chat_id)
        if log is None:
            if after is not None:
                _parse(after)  # nothing to resume, but a malformed id is still the client's error
            return None
        if after is not None:
            log.check(after)
        elif log.base:
            raise StreamGoneError("this answer is too long to replay (its first events were dropped)")
        return log.follow()

    async def running(self) -> int:
        return len(self._runs)
