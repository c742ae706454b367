"""`RedisEventHandler`: append one chat's request events to a Redis stream, batched.

Why batched: one XADD per token costs a round trip per token (LibreChat measured 16-18 % extra
wall time). Here a chat flushes text deltas at most once per `flush_interval` (or per `max_batch`
events): a delta after a pause goes out at once, deltas arriving faster wait (at most that long)
and go out as one entry in one pipelined round trip; any other event flushes at once. While a flush is in
flight, new events gather for the next one, so a slow Redis makes batches bigger, not slower.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import LMStreamError, StreamGoneError
from ..events import BaseEventHandler, Event
from .codec import BATCHED_TYPES, TERMINAL_TYPES, encode_events
from .connection import RETRY_DELAYS, redis_errors, unavailable
from .options import DEFAULT_OPTIONS, RedisOptions
from .pipeline import SharedWriter
from .scripts import NOT_CLAIMABLE, FlushArgs

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisEventHandler"]

logger = logging.getLogger("lmstream.redis")


class RedisEventHandler(BaseEventHandler):
    """Writes the events of one request of chat `chat_id` to the chat's stream (`Keys.stream`).

    Plug it into an `EventEmitter` (or feed it with `emit_nowait` from a `RequestStream`), then
    `await aclose()` to wait until everything is in Redis. The first flush replaces whatever an
    earlier request of the chat left (`reset=True`). While it runs it holds the chat's lease
    (renewed every `lease / 4`) and refreshes the stream's TTL, so readers can tell a live producer
    from a dead one. After a `done`/`error` event it writes nothing more.

    `on_error` is called once if Redis fails (the request cannot be delivered: cancel it).
    With `claim` (a queued job's lease value) the first flush takes the chat over only while the
    lease still holds that value: a job that expired, or that another worker runs, writes nothing.
    `options` gives the key names, TTL, `MAXLEN`, lease and batching (see `RedisOptions`).
    """

    def __init__(
        self,
        redis: Redis,
        chat_id: str,
        *,
        options: RedisOptions = DEFAULT_OPTIONS,
        owner: str = "producer",
        reset: bool = True,
        claim: str | None = None,
        on_error: Callable[[LMStreamError], Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"redis:{chat_id}")
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.chat_id = chat_id
        keys = options.keys
        self.key = keys.stream(chat_id)
        self.lease_key = keys.lease(chat_id)
        self.notify_channel = keys.notify_channel
        self.ttl = max(1, int(options.ttl))
        self.maxlen = options.maxlen
        self.flush_interval = options.flush_interval
        self.max_batch = options.max_batch
        # the lease in Redis is the whole documented lease, renewed every quarter: a producer that
        # Redis cannot hear from (a stall, a CLIENT PAUSE) for up to 3/4 of it keeps its chat
        self.lease_ms = max(100, int(options.lease * 1000))
        self._renew_every = options.lease / 4
        self.owner = owner
        #: fencing token: writes are accepted only while the chat's lease holds it
        self.token = f"{owner}:{os.urandom(6).hex()}"
        self.on_error = on_error
        self._reset = reset
        self._claim = claim
        #: the first flush took the chat over (so readers may have seen this request's events)
        self.claimed = False
        self._buf: list[Event] = []
        self._urgent = False
        self._seq = 0  # sequence number of the next event to write
        self._terminal_seen = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_renew = 0.0
        self._last_flush = 0.0  # loop time the last flush with events started
        self._last_expire = 0.0
        self.error: LMStreamError | None = None
        #: counters for tests and benchmarks: entries appended, and flush scripts sent (retries too)
        self.entries_written = 0
        self.commands_sent = 0

    # ---------------------------------------------------------------- producing
    def emit_nowait(self, event: Event) -> None:
        if self._terminal_seen or self.error is not None:
            return  # the stream already ended: a late event must not follow `done`
        self._buf.append(event)
        t = event.type
        if t in TERMINAL_TYPES:
            self._terminal_seen = True
            self._urgent = True
        elif t not in BATCHED_TYPES or len(self._buf) >= self.max_batch:
            self._urgent = True
        if self._task is None:
            self._ensure_task()
        if self._urgent or len(self._buf) == 1:
            self._wake.set()  # only what changes the flusher's plan wakes it: not every token

    async def start(self) -> None:
        """Take the lease and clear the chat's old stream now, before any event, so readers wait
        instead of answering 'no stream'. Raises `RedisUnavailableError` when Redis is down."""
        if self._task is not None:
            return
        try:
            await self._flush()
        except _LostChat as exc:
            self._fail(exc)
            raise self.error from exc  # type: ignore[misc]
        except Exception as exc:  # connection failures, and Redis refusing (OOM, read-only replica ...)
            self._fail(exc)
            raise self.error from exc  # type: ignore[misc]
        self._ensure_task()

    @property
    def finished(self) -> bool:
        """A `done`/`error` event was written (or Redis failed)."""
        return (self._terminal_seen and not self._buf and self._task is not None and self._task.done()) or (
            self.error is not None
        )

    @property
    def ended(self) -> bool:
        """A terminal event was handed to this handler."""
        return self._terminal_seen

    def _ensure_task(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lmstream-redis-{self.chat_id}")

    async def _run(self) -> None:
        try:
            while True:
                if not self._buf and not self._urgent:
                    try:  # idle: wake for the next event, or renew the lease when due
                        async with asyncio.timeout(self._renew_every):
                            while not self._buf and not self._urgent:
                                self._wake.clear()
                                await self._wake.wait()
                    except TimeoutError:
                        pass
                if self._buf and not self._urgent:
                    # batch window: at most one flush per `flush_interval`, counted from the last
                    # one, so a token after a pause goes out at once and a fast stream still
                    # batches; more text may arrive meanwhile; a non-text event ends it early
                    try:
                        async with asyncio.timeout_at(self._last_flush + self.flush_interval):
                            while not self._urgent:
                                self._wake.clear()
                                await self._wake.wait()
                    except TimeoutError:
                        pass
                await self._flush()
                if self._terminal_seen and not self._buf:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis failed or refused, or we lost the chat: report once
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, _LostChat) and exc.unclaimable:
            self.error = StreamGoneError(
                f"chat {self.chat_id!r}: the job is no longer queued for this chat (it expired, another worker "
                "runs it, or the chat was posted again); it was not run"
            )
        elif isinstance(exc, _LostChat):
            self.error = StreamGoneError(
                f"chat {self.chat_id!r}: this producer no longer owns the stream (a newer request took the chat "
                "over, or the lease expired while this process stalled); it stopped writing"
            )
        else:
            self.error = unavailable(self.redis, exc)
        self._buf.clear()
        logger.error("lmstream redis transport for chat %r: %s", self.chat_id, self.error)
        if self.on_error is not None:
            try:
                self.on_error(self.error)
            except Exception:  # pragma: no cover - user callback
                logger.exception("on_error callback raised")

    async def _flush(self, release: bool = False) -> None:
        batch, self._buf = self._buf, []
        if batch:
            self._last_flush = asyncio.get_running_loop().time()
        self._urgent = False
        now = time.monotonic()
        terminal = bool(batch) and batch[-1].type in TERMINAL_TYPES
        expire = self._reset or terminal or now - self._last_expire >= min(60.0, self.ttl / 4)
        renew = not terminal and (self._reset or now - self._last_renew >= self._renew_every)
        if not (batch or expire or renew or release):
            return
        args = FlushArgs(
            token=self.token,
            lease_ms=self.lease_ms,
            ttl=self.ttl,
            maxlen=self.maxlen,
            reset=self._reset,
            release=terminal or release,
            renew=renew,
            refresh_ttl=expire,
            terminal=terminal,
            claim=self._claim if self._reset else None,
            first_seq=self._seq,
            count=len(batch),
            events=encode_events(batch) if batch else None,
        )
        for delay in (*RETRY_DELAYS, None):  # then the flush fails: Redis is down, not blinking
            try:
                self.commands_sent += 1
                res = await SharedWriter.of(self.redis).submit(
                    [self.key, self.lease_key], args, self.notify_channel if batch else None
                )
                break
            except redis_errors():
                # A stale pooled connection (Redis restarted) or a blip: retry. The retry flag makes
                # the script skip a batch that did land (reply lost), so nothing is written twice.
                if delay is None:
                    self._buf[:0] = batch
                    raise
                args = dataclasses.replace(args, retry=True)
                await asyncio.sleep(delay)
        if int(res) < 0:
            raise _LostChat(unclaimable=int(res) == NOT_CLAIMABLE)
        if self._reset:
            self.claimed = True
        self._reset = False
        if expire:
            self._last_expire = now
        if renew:
            self._last_renew = now
        self._seq += len(batch)
        self.entries_written += 1 if batch else 0

    # ---------------------------------------------------------------- closing
    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every event handed over is in Redis, then stop; releases the lease
        if no terminal event came (readers then end the stream with an error at once)."""
        task = self._task
        if task is None:
            return
        if not self._terminal_seen and self.error is None:
            self._urgent = True
            self._terminal_seen = True  # no more events: flush what is buffered and stop
            self._wake.set()
            orphan = True
        else:
            orphan = False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
        except asyncio.CancelledError:
            task.cancel()
            raise
        if orphan and self.error is None:
            try:
                await self._flush(release=True)
            except Exception as exc:  # lost the chat, or Redis is down or refusing: the lease expires anyway
                logger.debug("lmstream redis transport for chat %r: lease not released: %r", self.chat_id, exc)

    async def close(self) -> None:
        """The `BaseEventHandler` hook the emitter calls: the same as `aclose()`."""
        await self.aclose()


class _LostChat(Exception):
    """The chat's lease no longer carries this producer's token (or, for a queued job, the queue's)."""

    def __init__(self, unclaimable: bool = False) -> None:
        super().__init__()
        self.unclaimable = unclaimable
