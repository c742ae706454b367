"""Requests on a Redis queue: web nodes enqueue (`RedisQueue`), model workers run them (`Worker`).

The queue is one stream (`Keys.queue`) read by the consumer group ``workers``
(`XREADGROUP` ... `XACK`). A job that streamed anything is never run twice: re-running a
half-streamed answer would duplicate tokens. Each job carries a claim token, and the chat's lease
reads ``queued:<claim>`` until a worker takes the chat over with the request's first event, so:

- a job the worker could not start (Redis failed before it took the chat over) goes back to the
  queue, and a job taken by a worker that died before starting it is run by another worker's
  reaper: nobody has seen any of it yet;
- a job whose worker died mid-answer (its lease expired) ends with an `error` event, written by
  the readers waiting on it or by another worker's reaper (`XAUTOCLAIM` of jobs idle for a lease);
- two workers can never both run one job: only one can take the lease from ``queued:<claim>``.

A finished job is acknowledged and deleted (`XACK` + `XDEL`); the queue is also bounded by
length and by age (`RedisOptions.queue_maxlen`, `queue_max_age`). A worker survives its queue
vanishing (`FLUSHALL`, eviction, a deleted group): it recreates the group, logs it, and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import _json
from .._observe import remote_parent
from ..errors import LMStreamError, RedisUnavailableError
from ..events import EventEmitter
from .codec import field, s
from .connection import Retrying, naming_redis, retried, unavailable
from .options import DEFAULT_OPTIONS, RedisOptions
from .reader import reap
from .runner import ChatRunner

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .producer import RedisEventHandler

__all__ = ["JobEncodingError", "QueueFullError", "RedisQueue", "Worker", "live_workers"]

logger = logging.getLogger("lmstream.redis")

GROUP = "workers"
QUEUED = "queued:"  #: a chat's lease value while its job waits for a worker: ``queued:<claim>``
Handle = Callable[[dict[str, Any], EventEmitter], Awaitable[Any]]


# Workers' heartbeats: a sorted set (worker name -> Redis time in ms of its last beat), so a web
# node's /healthz can tell whether any worker is alive. KEYS: 1 the set. ARGV: 1 the worker's
# name ('' to only count), 2 ms after which a worker counts as gone.
_BEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""


async def live_workers(redis: Any, options: RedisOptions = DEFAULT_OPTIONS) -> int:
    """How many workers sent a heartbeat within the last two leases."""
    return int(await redis.eval(_BEAT_SCRIPT, 1, options.keys.workers, "", int(options.lease * 2000)))


# Room for one more job? KEYS: 1 the queue. ARGV: 1 max jobs, 2 max bytes, 3 the job's bytes.
# 0: room; 1: too many jobs; 2: too many bytes (MEMORY USAGE of the whole stream, exact).
_ROOM_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
local used = redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', '0') or 0
if used + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return 2 end
return 0
"""


class QueueFullError(LMStreamError):
    """The job queue holds as many jobs (or bytes) as it may: retry later (HTTP 429)."""

    status_code = 429


class JobEncodingError(LMStreamError, ValueError):
    """The job cannot be written as JSON (e.g. nested deeper than the encoder allows): fix the input."""


class RedisQueue:
    """The web node's side: `await enqueue(chat_id, job)` hands a request to some worker.

    Until a worker takes the job, the chat's lease reads ``queued:<claim>`` (for
    `options.queue_timeout` seconds): readers wait for it; if no worker takes it in time, they end
    the stream with an error.
    """

    def __init__(self, redis: Redis, *, options: RedisOptions = DEFAULT_OPTIONS) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.keys = options.keys
        self.queue_timeout_ms = int(options.queue_timeout * 1000)
        self.maxlen = options.queue_maxlen
        self.max_age_ms = int(options.queue_max_age * 1000)
        self.max_jobs = options.queue_max_jobs
        self.max_bytes = options.queue_max_bytes

    async def depth(self) -> int:
        """Jobs in the queue: waiting for a worker, or being run."""
        return int(await self.redis.xlen(self.keys.queue))

    async def enqueue(self, chat_id: str, job: dict[str, Any]) -> str:
        """Queue `job` (JSON-able: prompt, history, hyperparameters ...) for chat `chat_id`;
        the chat's previous stream is replaced. Returns the queue entry id. Raises
        `RedisUnavailableError` when Redis is down or refuses (e.g. ``OOM``), `JobEncodingError`
        when `job` is not JSON-able."""
        try:
            payload = _json.dumps(job)
        except (TypeError, ValueError) as exc:
            raise JobEncodingError(f"the request cannot be queued: it is not serialisable as JSON ({exc})") from exc
        claim = os.urandom(8).hex()
        fields = {"chat": chat_id, "job": payload, "claim": claim}
        room = (_ROOM_SCRIPT, 1, self.keys.queue, self.max_jobs, self.max_bytes, len(payload))
        async with naming_redis(self.redis):
            full = int(await retried(lambda: self.redis.eval(*room)))
        if full:
            what = f"{self.max_jobs} jobs" if full == 1 else f"{self.max_bytes} bytes"
            raise QueueFullError(f"the job queue is full ({what} waiting for workers); retry shortly")

        attempts = 0

        async def send() -> str:
            # Safe to repeat: a second copy of the job carries the same claim, and only one job can
            # take the chat over from ``queued:<claim>``. A retry first checks whether the attempt
            # whose reply was lost landed (the lease still reads ``queued:<claim>``): then it does
            # not replace the chat's stream again.
            nonlocal attempts
            attempts += 1
            if attempts > 1 and s(await self.redis.get(self.keys.lease(chat_id)) or "") == QUEUED + claim:
                for entry_id, f in await self.redis.xrevrange(self.keys.queue, count=64):
                    if s(field(f, "claim") or "") == claim:
                        return s(entry_id)
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(self.keys.stream(chat_id), self.keys.stop(chat_id))
            pipe.set(self.keys.lease(chat_id), QUEUED + claim, px=self.queue_timeout_ms)
            pipe.xadd(self.keys.queue, fields, maxlen=self.maxlen, approximate=True)
            pipe.xtrim(  # exact: `~` would keep a whole node of old jobs, the ones it is meant to drop
                self.keys.queue, minid=f"{max(0, int(time.time() * 1000) - self.max_age_ms)}-0", approximate=False
            )
            return s((await pipe.execute())[2])

        async with naming_redis(self.redis):
            return await retried(send)


class Worker:
    """The model worker's side: take jobs from the group and run `handle(job, emitter)` with the
    chat's events going to Redis (via a `ChatRunner`, so stops reach it).

    `await run()` serves until `stop()`; Redis outages, refusals and a vanished queue are logged
    and retried, never fatal.
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
        self._r: Any = Retrying(redis)  # for the calls that are safe to repeat
        self.handle = handle
        self.options = options
        self.keys = options.keys
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = max(1, concurrency)
        self.lease = options.lease
        self.runner = ChatRunner(redis, options=options, owner=self.name)
        self._jobs: set[asyncio.Task[None]] = set()
        self._running: set[str] = set()  #: queue entry ids this worker runs
        self._stopping = asyncio.Event()
        self.jobs_done = 0
        self.jobs_reaped = 0
        self.jobs_requeued = 0
        self.jobs_expired = 0  #: jobs dropped unrun: their wait for a worker had expired
        self.groups_created = 0

    def stop(self) -> None:
        self._stopping.set()

    async def _ensure_group(self) -> None:
        import redis.exceptions as rex

        try:
            await self._r.xgroup_create(self.keys.queue, GROUP, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return
        self.groups_created += 1
        if self.groups_created > 1:
            logger.warning(
                "lmstream worker: the job queue %s or its group %r had vanished (FLUSHALL, eviction, a deleted "
                "group, or Redis restarted empty): created it again",
                self.keys.queue,
                GROUP,
            )

    async def run(self) -> None:
        await self.runner.start()
        with contextlib.suppress(Exception):  # announced at once (the reaper loop beats after that)
            await self._beat()
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
                except Exception as exc:
                    group_ready = False
                    if _vanished(exc):  # the queue key or its group is gone: create it again, at once
                        continue
                    logger.warning("lmstream worker: %s; retrying in %.1fs", unavailable(self.redis, exc), delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
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
                self._spawn(s(entry_id), fields)

    def _spawn(self, entry_id: str, fields: dict[Any, Any]) -> None:
        self._running.add(entry_id)
        task = asyncio.create_task(self._run_job(entry_id, fields), name=f"lmstream-job-{entry_id}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _run_job(self, entry_id: str, fields: dict[Any, Any]) -> None:
        try:
            chat_id = s(field(fields, "chat"))
            job = _json.loads(field(fields, "job"))
            claim_raw = field(fields, "claim")
        except Exception as exc:  # not a job lmstream wrote: drop it
            logger.error("lmstream worker: queue entry %s is not a job (%r); deleted", entry_id, exc)
            await self._done(entry_id)
            return
        claim = QUEUED + s(claim_raw) if claim_raw is not None else None
        if claim is not None:
            # Still queued for this chat? A job whose wait expired (its readers were told), that
            # another worker runs, or whose chat was posted again, is dropped before the model is called.
            try:
                holder = await self._r.get(self.keys.lease(chat_id))
            except Exception as exc:  # Redis failed: the job stays pending for a reaper
                logger.warning("lmstream worker: job %s for chat %r not checked: %s", entry_id, chat_id, exc)
                self._running.discard(entry_id)
                return
            if holder is None or s(holder) != claim:
                self.jobs_expired += 1
                logger.info("lmstream worker: job %s for chat %r dropped unrun: no longer queued", entry_id, chat_id)
                await self._done(entry_id)
                return

        def start(emitter: EventEmitter) -> Awaitable[Any]:
            return self.handle(job, emitter)

        handler: RedisEventHandler | None = None
        try:
            with remote_parent(job.get("trace") or {}):  # the enqueuing request's trace, if it had one
                handler = await self.runner.run(chat_id, start, clear_stop=False, claim=claim)
        except Exception as exc:  # Redis failed before the request started
            logger.warning("lmstream worker: job %s for chat %r could not start: %s", entry_id, chat_id, exc)
        if handler is None or (not handler.claimed and isinstance(handler.error, RedisUnavailableError)):
            # Nobody has seen anything of this job: it goes back to the queue (or, if Redis is down
            # now, stays pending for a reaper to run once Redis is back).
            await self._requeue(entry_id, fields, chat_id)
            return
        if handler.claimed:
            self.jobs_done += 1
        elif handler.error is not None:  # expired, run by another worker, or the chat was posted again
            logger.info("lmstream worker: job %s for chat %r skipped: %s", entry_id, chat_id, handler.error)
        await self._done(entry_id)

    async def _done(self, entry_id: str) -> None:
        """Acknowledge and delete the job: prompts and attachments do not outlive it in Redis."""
        self._running.discard(entry_id)

        async def send() -> Any:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.keys.queue, GROUP, entry_id)
            pipe.xdel(self.keys.queue, entry_id)
            return await pipe.execute()

        try:
            await retried(send)
        except Exception as exc:  # left pending: a reaper acknowledges it later
            logger.warning("lmstream worker: job %s not acknowledged: %s", entry_id, unavailable(self.redis, exc))

    async def _requeue(self, entry_id: str, fields: dict[Any, Any], chat_id: str) -> None:
        self._running.discard(entry_id)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(self.keys.queue, fields, maxlen=self.options.queue_maxlen, approximate=True)
            pipe.xack(self.keys.queue, GROUP, entry_id)
            pipe.xdel(self.keys.queue, entry_id)
            await pipe.execute()
        except Exception as exc:
            logger.warning(
                "lmstream worker: job %s for chat %r stays pending (a reaper runs it once Redis is back): %s",
                entry_id,
                chat_id,
                unavailable(self.redis, exc),
            )
            return
        self.jobs_requeued += 1
        logger.warning("lmstream worker: job %s for chat %r could not start: back in the queue", entry_id, chat_id)

    async def _reap_loop(self) -> None:
        """Every half lease: keep this worker's jobs fresh; claim other jobs idle for a lease, run
        the ones never started, end the streams of those whose worker died."""
        while True:
            await asyncio.sleep(self.lease / 2)
            try:
                await self._heartbeat()
                await self.reap_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("lmstream worker: reaper skipped a round: %s", unavailable(self.redis, exc))

    async def _beat(self) -> None:
        """Tell the web nodes' /healthz that this worker is alive."""
        await retried(
            lambda: self.redis.eval(
                _BEAT_SCRIPT, 1, self.keys.workers, self.name, int(self.options.lease * 2000)
            )
        )

    async def _heartbeat(self) -> None:
        """Reset the idle time of the jobs this worker runs, so no reaper takes a live job for an
        abandoned one (a request waiting for a slow first token has not taken its chat over yet)."""
        await self._beat()
        if self._running:
            await self._r.xclaim(self.keys.queue, GROUP, self.name, 0, list(self._running), justid=True)

    async def reap_once(self) -> int:
        start = "0-0"
        reaped = 0
        while True:
            res = await self._r.xautoclaim(
                self.keys.queue, GROUP, self.name, min_idle_time=int(self.lease * 1000), start_id=start, count=100
            )
            start, claimed = s(res[0]), res[1]
            for entry_id_raw, fields in claimed:
                entry_id = s(entry_id_raw)
                if not fields or entry_id in self._running:
                    continue  # deleted meanwhile, or ours
                chat_id = s(field(fields, "chat"))
                holder = await self._r.get(self.keys.lease(chat_id))
                if holder is not None:
                    claim = field(fields, "claim")
                    if claim is not None and s(holder) == QUEUED + s(claim):
                        # taken by a worker that never started it (it died, or lost Redis): run it
                        logger.warning(
                            "lmstream worker: running job %s for chat %r, abandoned unstarted", entry_id, chat_id
                        )
                        self._spawn(entry_id, fields)
                    continue  # its worker is alive (or it is still queued): leave it
                if await reap(self._r, chat_id, options=self.options):
                    reaped += 1
                await self._done(entry_id)
            if start == "0-0":
                break
        self.jobs_reaped += reaped
        return reaped


def _vanished(exc: BaseException) -> bool:
    """Redis's answer when the queue key or its consumer group no longer exists."""
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED" in text or "no longer exists" in text
