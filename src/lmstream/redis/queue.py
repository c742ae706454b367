"""Requests on a Redis queue: web nodes enqueue (`RedisQueue`), model workers run them (`Worker`).

The queue is one stream (`Keys.queue`) read by the consumer group ``workers``
(`XREADGROUP` ... `XACK`). A job is never run twice: re-running a half-streamed answer would
duplicate tokens. Instead each worker's reaper claims entries idle longer than a lease
(`XAUTOCLAIM`); if the chat's lease is gone (the worker died) it ends the chat's stream with an
`error` event and acknowledges the job. A live worker's lease is renewed by its heartbeat, so a
long answer is never mistaken for a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import _json
from .._observe import remote_parent
from ..events import EventEmitter
from .codec import field, s
from .connection import naming_redis, redis_errors
from .options import DEFAULT_OPTIONS, RedisOptions
from .reader import reap
from .runner import ChatRunner

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisQueue", "Worker"]

logger = logging.getLogger("lmstream.redis")

GROUP = "workers"
Handle = Callable[[dict[str, Any], EventEmitter], Awaitable[Any]]


class RedisQueue:
    """The web node's side: `await enqueue(chat_id, job)` hands a request to some worker.

    Until a worker takes the job, the chat's lease reads ``queued`` (for `options.queue_timeout`
    seconds): readers wait for it; if no worker takes it in time, they end the stream with an error.
    """

    def __init__(self, redis: Redis, *, options: RedisOptions = DEFAULT_OPTIONS) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.keys = options.keys
        self.queue_timeout_ms = int(options.queue_timeout * 1000)
        self.maxlen = options.queue_maxlen

    async def enqueue(self, chat_id: str, job: dict[str, Any]) -> str:
        """Queue `job` (JSON-able: prompt, history, hyperparameters ...) for chat `chat_id`;
        the chat's previous stream is replaced. Returns the queue entry id."""
        async with naming_redis(self.redis):
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.keys.stream(chat_id), self.keys.stop(chat_id))
            pipe.set(self.keys.lease(chat_id), "queued", px=self.queue_timeout_ms)
            pipe.xadd(
                self.keys.queue,
                {"chat": chat_id, "job": _json.dumps(job)},
                maxlen=self.maxlen,
                approximate=True,
            )
            res = await pipe.execute()
        return s(res[-1])


class Worker:
    """The model worker's side: take jobs from the group and run `handle(job, emitter)` with the
    chat's events going to Redis (via a `ChatRunner`, so stops reach it).

    `await run()` serves until `stop()`; Redis outages are logged and retried, never fatal.
    """

    def __init__(
        self,
        redis: Redis,
        handle: Handle,
        *,
        options: RedisOptions = DEFAULT_OPTIONS,
        name: str | None = None,
        concurrency: int = 4,
    ) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.handle = handle
        self.options = options
        self.keys = options.keys
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = max(1, concurrency)
        self.lease = options.lease
        self.runner = ChatRunner(redis, options=options, owner=self.name)
        self._jobs: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.jobs_done = 0
        self.jobs_reaped = 0

    def stop(self) -> None:
        self._stopping.set()

    async def _ensure_group(self) -> None:
        import redis.exceptions as rex

        try:
            await self.redis.xgroup_create(self.keys.queue, GROUP, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        await self.runner.start()
        reaper = asyncio.create_task(self._reap_loop(), name="lmstream-worker-reaper")
        delay = 0.1
        group_ready = False
        try:
            while not self._stopping.is_set():
                try:
                    if not group_ready:
                        await self._ensure_group()
                        group_ready = True
                    await self._take_jobs()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except redis_errors() as exc:
                    group_ready = False
                    logger.warning("lmstream worker: Redis unavailable (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                except Exception as exc:
                    if "NOGROUP" in str(exc):  # Redis restarted without persistence
                        group_ready = False
                        continue
                    raise
        finally:
            reaper.cancel()
            with contextlib.suppress(BaseException):
                await reaper
            await self.runner.aclose()
            if self._jobs:
                await asyncio.wait(list(self._jobs), timeout=5.0)

    async def _take_jobs(self) -> None:
        free = self.concurrency - len(self._jobs)
        if free <= 0:
            await asyncio.wait(list(self._jobs), timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            return
        res = await self.redis.xreadgroup(GROUP, self.name, {self.keys.queue: ">"}, count=free, block=1000)
        for _stream, entries in res or []:
            for entry_id, fields in entries:
                task = asyncio.create_task(self._run_job(s(entry_id), fields))
                self._jobs.add(task)
                task.add_done_callback(self._jobs.discard)

    async def _run_job(self, entry_id: str, fields: dict[Any, Any]) -> None:
        chat_id = s(field(fields, "chat"))
        job = _json.loads(field(fields, "job"))

        def start(emitter: EventEmitter) -> Awaitable[Any]:
            return self.handle(job, emitter)

        try:
            with remote_parent(job.get("trace") or {}):  # the enqueuing request's trace, if it had one
                await self.runner.run(chat_id, start, clear_stop=False)
            self.jobs_done += 1
        except Exception as exc:  # Redis failed: the reaper (ours or another worker's) ends the stream
            logger.error("lmstream worker: job %s for chat %r failed: %s", entry_id, chat_id, exc)
        with contextlib.suppress(*redis_errors()):
            await self.redis.xack(self.keys.queue, GROUP, entry_id)

    async def _reap_loop(self) -> None:
        """Every half lease: claim jobs idle for a lease; end the streams of those whose worker died."""
        while True:
            await asyncio.sleep(self.lease / 2)
            try:
                await self.reap_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lmstream worker: reaper skipped a round: %s", exc)

    async def reap_once(self) -> int:
        start = "0-0"
        reaped = 0
        while True:
            res = await self.redis.xautoclaim(
                self.keys.queue, GROUP, self.name, min_idle_time=int(self.lease * 1000), start_id=start, count=100
            )
            start, claimed = s(res[0]), res[1]
            for entry_id, fields in claimed:
                if not fields:
                    continue  # deleted from the stream meanwhile
                chat_id = s(field(fields, "chat"))
                if await self.redis.exists(self.keys.lease(chat_id)):
                    continue  # its worker is alive (or it is still queued): leave it
                if await reap(self.redis, chat_id, options=self.options):
                    reaped += 1
                await self.redis.xack(self.keys.queue, GROUP, s(entry_id))
            if start == "0-0":
                break
        self.jobs_reaped += reaped
        return reaped
