"""Which chats have an answer running: the seam for stop and resume.

The server talks to a `ChatRegistry` only: `open()` when an answer starts (it gets a `ChatLog`
to write the answer's SSE frames to), `stop()` from `POST /api/chat/{id}/stop`, `resume()` from
`GET /api/chat/{id}/stream`. `InMemoryChatRegistry` serves one process; a registry backed by
Redis can implement the same four methods so that any node stops or resumes any chat.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable

__all__ = ["ChatLog", "ChatRegistry", "InMemoryChatRegistry", "MemoryChatLog"]


class ChatLog(ABC):
    """The frames of one running answer, as they are sent."""

    @abstractmethod
    def write(self, frame: bytes) -> None:
        """Record one frame (hot path: synchronous; a remote log batches and flushes itself)."""

    @abstractmethod
    async def close(self) -> None:
        """The answer is over (finished, failed or stopped): readers end after the last frame."""


class ChatRegistry(ABC):
    @abstractmethod
    async def open(self, chat_id: str, stop: Callable[[], None]) -> ChatLog:
        """Register a new answer for `chat_id`; `stop()` cancels it. An earlier running answer of
        the same chat is stopped (one answer per chat at a time)."""

    @abstractmethod
    async def stop(self, chat_id: str) -> bool:
        """Stop the chat's running answer; False when none runs."""

    @abstractmethod
    async def resume(self, chat_id: str, last_event_id: str | None = None) -> AsyncIterator[bytes] | None:
        """The running answer's frames (all of them, or those after `last_event_id`), then the
        rest as they come; None when nothing runs for the chat."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most registries hold nothing
        """Release what the registry holds (connections); the in-memory one holds nothing."""


class MemoryChatLog(ChatLog):
    """Frames kept in a list; readers follow with one shared wake-up future."""

    __slots__ = ("_closed", "_on_close", "_waiter", "frames", "stop")

    def __init__(self, stop: Callable[[], None], on_close: Callable[[MemoryChatLog], None]) -> None:
        self.frames: list[bytes] = []
        self.stop = stop
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close

    def write(self, frame: bytes) -> None:
        self.frames.append(frame)
        w = self._waiter
        if w is not None:
            self._waiter = None
            if not w.done():
                w.set_result(None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.write(b"")  # wakes readers; empty frames are skipped
        self._on_close(self)

    async def follow(self, start: int) -> AsyncIterator[bytes]:
        i = start
        while True:
            while i < len(self.frames):
                frame = self.frames[i]
                i += 1
                if frame:
                    yield f"id: {i}\n".encode() + frame
            if self._closed:
                return
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)


class InMemoryChatRegistry(ChatRegistry):
    """One process's running chats. Replay is from memory, so only this process can resume."""

    def __init__(self) -> None:
        self._runs: dict[str, MemoryChatLog] = {}

    def __len__(self) -> int:
        return len(self._runs)

    async def open(self, chat_id: str, stop: Callable[[], None]) -> ChatLog:
        earlier = self._runs.get(chat_id)
        if earlier is not None:
            earlier.stop()
        log = MemoryChatLog(stop, lambda closed: self._forget(chat_id, closed))
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

    async def resume(self, chat_id: str, last_event_id: str | None = None) -> AsyncIterator[bytes] | None:
        log = self._runs.get(chat_id)
        if log is None:
            return None
        start = 0
        if last_event_id is not None and last_event_id.isdigit():
            start = min(int(last_event_id), len(log.frames))
        return log.follow(start)
