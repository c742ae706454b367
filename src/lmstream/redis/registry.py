"""Redis behind `lmstream serve --redis URL [--queue]`: any web node starts, resumes or stops any chat.

The server's chat registry seam, backed by Redis. Events (not HTTP frames) are what Redis keeps;
each node turns them into the UI message stream itself, replaying from the start through a fresh
`UIStreamMapper` (so the mapper's state is right) and sending only what follows `Last-Event-ID`.
The mapping is deterministic (the message id comes from the request id), so a resumed response
joined to the interrupted one is byte-for-byte what an uninterrupted run sends.

Without `--queue` the node that takes the POST runs the request (detached from the HTTP response:
a client that leaves may come back; only stop cancels). With `--queue` it goes to a worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .._json import dumpb
from .._observe import trace_headers
from ..errors import LMStreamError
from ..events import EventType
from ..server.registry import ChatLog, ChatRegistry
from ..server.ui_stream import UIStreamMapper
from .codec import TERMINAL_TYPES, StreamItem
from .connection import Retrying, naming_redis
from .options import DEFAULT_OPTIONS, RedisOptions
from .queue import RedisQueue
from .reader import RedisStreamReader
from .runner import ChatRunner, request_stop

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..processor import LMRequestProcessor

__all__ = ["RedisChatRegistry", "ui_frames"]

_DONE = b"data: [DONE]\n\n"


def _frame(chunks: list[dict[str, Any]], position: str, last: bool) -> bytes:
    """One event's chunks; the SSE id rides on the last message, so a client that has it has them all."""
    parts = [b"data: " + dumpb(c) + b"\n\n" for c in chunks]
    parts[-1] = f"id: {position}\n".encode() + parts[-1]
    if last:
        parts.append(_DONE)
    return b"".join(parts)


async def ui_frames(items: AsyncIterator[StreamItem], after: str | None = None) -> AsyncIterator[bytes]:
    """UI message stream frames for a chat's events (all read from the start), skipping every
    frame up to and including position `after`. A failure while reading (the stream replaced by a
    newer request, trimmed, or Redis lost) ends the frames with one `error` chunk."""
    mapper: UIStreamMapper | None = None
    sending = after is None
    try:
        async for item in items:
            ev = item.event
            chunks: list[dict[str, Any]] = []
            if mapper is None:
                rid = ev.metadata.get("request_id") or item.id.split(":", 1)[0]
                mapper = UIStreamMapper(message_id=f"msg_{rid}")
                chunks.append(mapper.start())
            if ev.type == EventType.ERROR and ev.metadata.get("error_type") == "CancelledError":
                chunks += mapper.stopped()  # a stop: `abort`, as when the request ran in this process
            else:
                chunks += mapper.feed(str(ev.type), ev.value, ev.metadata)
            terminal = ev.type in TERMINAL_TYPES
            if terminal and not mapper.closed:
                chunks += mapper.stopped()
            if sending and chunks:
                yield _frame(chunks, item.id, terminal)
            elif sending and terminal:
                yield _DONE
            if item.id == after:
                sending = True
            if terminal:
                return
    except LMStreamError as exc:
        mapper = mapper or UIStreamMapper()
        chunks = [] if sending or mapper.closed else [mapper.start()]
        chunks += mapper.feed(EventType.ERROR, str(exc), {"error_type": type(exc).__name__})
        yield b"".join(b"data: " + dumpb(c) + b"\n\n" for c in chunks) + _DONE


class _NoLog(ChatLog):  # type: ignore[misc, unused-ignore]  # (Any without the server extra)
    """Redis keeps events, not frames: the registry's frame log is not used."""

    def write(self, frame: bytes) -> None:
        pass

    async def close(self) -> None:
        pass


class RedisChatRegistry(ChatRegistry):  # type: ignore[misc, unused-ignore]
    """Stop and resume across nodes, and the start of answers (`launch`), on Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        options: RedisOptions = DEFAULT_OPTIONS,
        queue: bool = False,
        max_messages: int = 500,
        close_redis: bool = False,
    ) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.options = options
        self.reader = RedisStreamReader(redis, options=options, multiplex=True)
        self.runner = ChatRunner(redis, options=options)
        self.queue = RedisQueue(redis, options=options) if queue else None
        self.max_messages = max_messages
        self.close_redis = close_redis

    async def start(self) -> None:
        """Subscribe to stops (for the answers this node runs)."""
        if self.queue is None:
            await self.runner.start()

    async def launch(
        self,
        chat_id: str,
        processor: LMRequestProcessor[Any],
        kwargs: dict[str, Any],
        body: Any,
    ) -> None:
        """Start the chat's answer: on a worker (queue: the request `body` goes as the job) or in
        this process, detached from the response. Returns once a reader would see the new answer."""
        if self.queue is not None:
            job: dict[str, Any] = {"chat": body, "max_messages": self.max_messages}
            trace = trace_headers()  # the worker's spans join this request's trace
            if trace:
                job["trace"] = trace
            await self.queue.enqueue(chat_id, job)
            return

        def start(emitter: Any) -> Any:
            return processor.process(event_emitter=emitter, **kwargs)

        await self.runner.launch(chat_id, start)

    async def open(self, chat_id: str, stop: Callable[[], None]) -> ChatLog:
        return _NoLog()

    async def stop(self, chat_id: str) -> bool:
        """Stop the chat's answer wherever it runs (or is queued); False when none is."""
        async with naming_redis(self.redis):
            if not await Retrying(self.redis).exists(self.reader.keys.lease(chat_id)):
                return False  # nobody owns the chat: nothing runs
        await request_stop(self.redis, chat_id, options=self.options)
        return True

    async def resume(self, chat_id: str, last_event_id: str | None = None) -> AsyncIterator[bytes] | None:
        """Frames after `last_event_id` (all when None); None when the chat has no stream.
        Raises `StreamGoneError` (HTTP 410) before any byte when the position is gone."""
        if last_event_id is None and not await self.reader.exists(chat_id):
            return None
        frames = ui_frames(self.reader.read(chat_id), last_event_id)
        if last_event_id is not None:
            await self.reader.validate(chat_id, last_event_id)
        return frames

    async def aclose(self) -> None:
        await self.runner.aclose()
        await self.reader.aclose()
        if self.close_redis:
            await self.redis.aclose()
