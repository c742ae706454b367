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
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._observe import trace_headers
from ..chat_registry import Answer, DetachedChatRegistry, Positioned
from .codec import parse_position
from .connection import Retrying, naming_redis
from .options import DEFAULT_OPTIONS, RedisOptions
from .queue import RedisQueue, live_workers
from .reader import RedisStreamReader
from .runner import ChatRunner, request_stop

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisChatRegistry"]

logger = logging.getLogger("lmstream.redis")


class RedisChatRegistry(DetachedChatRegistry):
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
        self._watches: set[asyncio.Task[None]] = set()  # queued answers this node posted, until they end

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
            # Done when the chat's stream ends (a worker finished it, or nobody took it in time):
            # the web node holds a slot until then, so clients that post and leave cannot queue
            # more than the node's --max-concurrent at once.
            watch = asyncio.create_task(self._until_ended(chat_id), name=f"lmstream-queued-{chat_id}")
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)
            return watch
        return await self.runner.launch(chat_id, answer.run)

    async def _until_ended(self, chat_id: str) -> None:
        """Follow the chat's stream to its end (its last event, or an error of the store)."""
        try:
            async for _ in self.reader.read(chat_id):
                pass
        except Exception as exc:  # the store failed, or the answer was replaced: it is over for us
            logger.debug("lmstream: stopped watching queued chat %r: %r", chat_id, exc)

    async def stop(self, chat_id: str) -> bool:
        """Stop the chat's answer wherever it runs (or is queued); False when none is."""
        async with naming_redis(self.redis):
            if not await Retrying(self.redis).exists(self.reader.keys.lease(chat_id)):
                return False  # nobody owns the chat: nothing runs
        await request_stop(self.redis, chat_id, options=self.options)
        return True

    async def resume(self, chat_id: str, after: str | None = None) -> AsyncIterator[Positioned] | None:
        """Every event of the chat's answer from the first; None when the chat has no stream.
        Raises `StreamGoneError` (HTTP 410) before any byte when `after` is gone."""
        if after is not None:
            parse_position(after)  # `StreamGoneError` before any Redis call for what is no position
        elif not await self.reader.exists(chat_id):
            return None
        items = self.reader.read(chat_id)
        if after is not None:
            await self.reader.validate(chat_id, after)
        return items

    @property
    def runs_answers_here(self) -> bool:
        return self.queue is None

    async def running(self) -> int:
        return len(self.runner.running)

    async def health(self, timeout: float = 2.0) -> dict[str, Any]:
        """Redis answers (a PING within `timeout`); with the queue: the jobs in it and the workers
        whose heartbeat is fresh (none: queued chats would wait, then fail)."""
        report: dict[str, Any] = {"down": []}
        try:
            async with asyncio.timeout(timeout):
                await self.redis.ping()
                if self.queue is not None:
                    report["queued"] = await self.queue.depth()
                    report["workers"] = await live_workers(self.redis, self.options)
        except Exception as exc:  # unreachable, refusing, or too slow: say so (the log names it)
            logger.warning("lmstream: /healthz: Redis is unavailable: %r", exc)
            report["down"].append("redis")
            return report
        if self.queue is not None and not report["workers"]:
            report["down"].append("workers")
        return report

    async def aclose(self) -> None:
        for watch in list(self._watches):
            watch.cancel()
        await self.runner.aclose()
        await self.reader.aclose()
        if self.close_redis:
            await self.redis.aclose()
