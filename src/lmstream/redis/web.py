"""Redis behind `lmstream serve --redis URL [--queue]`: any web node starts, resumes or stops any chat.

`RedisChatRegistry` implements `lmstream.chat_registry.DetachedChatRegistry` on Redis (it does not
import the server; the command line wires the two). Redis keeps events, not HTTP frames: `resume`
yields every event of the chat's answer from the first, with its position, and each node maps
them to its wire format itself.

Without `--queue` the node that takes the POST runs the request (detached from the HTTP response:
a client that leaves may come back; only stop cancels). With `--queue` it goes to a worker.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._observe import trace_headers
from ..chat_registry import Answer, DetachedChatRegistry, Positioned
from ..errors import StreamGoneError
from ._common import DEFAULT_LEASE, DEFAULT_PREFIX, DEFAULT_TTL, naming_redis
from .control import ChatRunner, request_stop
from .queue import RedisQueue
from .reader import RedisStreamReader

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisChatRegistry"]

#: ``<ms>-<seq>:<index>`` in ASCII digits of sane length (not "²", not 4,301 digits)
_POSITION = re.compile(r"[0-9]{1,20}-[0-9]{1,20}:[0-9]{1,9}")


class RedisChatRegistry(DetachedChatRegistry):
    """Stop and resume across nodes, and the start of answers (`launch`), on Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue: bool = False,
        prefix: str = DEFAULT_PREFIX,
        lease: float = DEFAULT_LEASE,
        ttl: float = DEFAULT_TTL,
        max_messages: int = 500,
        close_redis: bool = False,
    ) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.prefix = prefix
        self.reader = RedisStreamReader(redis, prefix=prefix, lease=lease, multiplex=True)
        self.runner = ChatRunner(redis, prefix=prefix, lease=lease, ttl=ttl)
        self.queue = RedisQueue(redis, prefix=prefix) if queue else None
        self.max_messages = max_messages
        self.close_redis = close_redis

    async def start(self) -> None:
        """Subscribe to stops (for the answers this node runs)."""
        if self.queue is None:
            await self.runner.start()

    async def launch(self, chat_id: str, answer: Answer) -> asyncio.Future[Any] | None:
        """Start the chat's answer: on a worker (queue: `answer.job` goes as the job) or in this
        process, detached from the response. Returns once a reader would see the new answer."""
        if self.queue is not None:
            job: dict[str, Any] = {"chat": dict(answer.job), "max_messages": self.max_messages}
            trace = trace_headers()  # the worker's spans join this request's trace
            if trace:
                job["trace"] = trace
            await self.queue.enqueue(chat_id, job)
            return None
        return await self.runner.launch(chat_id, answer.run)

    async def stop(self, chat_id: str) -> bool:
        """Stop the chat's answer wherever it runs (or is queued); False when none is."""
        async with naming_redis(self.redis):
            if not await self.redis.exists(self.reader.keys.lease(chat_id)):
                return False  # nobody owns the chat: nothing runs
        await request_stop(self.redis, chat_id, prefix=self.prefix)
        return True

    async def resume(self, chat_id: str, after: str | None = None) -> AsyncIterator[Positioned] | None:
        """Every event of the chat's answer from the first; None when the chat has no stream.
        Raises `StreamGoneError` (HTTP 410) before any byte when `after` is gone."""
        if after is not None:
            if _POSITION.fullmatch(after.strip()) is None:
                raise StreamGoneError(f"Last-Event-ID: {after[:40]!r} is not a stream position")
        elif not await self.reader.exists(chat_id):
            return None
        items = self.reader.read(chat_id)
        if after is not None:
            await self.reader.validate(chat_id, after)
        return items

    async def running(self) -> int:
        return len(self.runner.running)

    async def aclose(self) -> None:
        await self.runner.aclose()
        await self.reader.aclose()
        if self.close_redis:
            await self.redis.aclose()
