"""`ChatRunner`: run requests whose events go to Redis, stoppable from any process.

Stop travels two ways: a PUBLISH on ``{prefix}:stop`` (payload: the chat id) reaches every runner
at once, and a short-lived stop key (`Keys.stop`) catches a runner that starts (or a queued
job that is picked up) after the broadcast. The runner cancels the request's task; the processor
then closes the provider connection and writes the `error` event that ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._redact import redact
from ..events import Event, EventEmitter, EventLevel, EventType
from .codec import s
from .connection import Retrying, naming_redis, retried
from .options import DEFAULT_OPTIONS, RedisOptions
from .producer import RedisEventHandler

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ChatRunner", "request_stop"]

logger = logging.getLogger("lmstream.redis")

STOP_KEY_TTL_MS = 60_000

Start = Callable[[EventEmitter], Awaitable[Any]]


async def request_stop(redis: Redis, chat_id: str, *, options: RedisOptions = DEFAULT_OPTIONS) -> int:
    """Ask whichever process runs (or will pick up) the chat's request to cancel it.
    Returns how many runners heard the broadcast."""
    keys = options.keys

    async def send() -> Any:  # safe to repeat: the key is set again, a second stop changes nothing
        pipe = redis.pipeline(transaction=False)
        pipe.set(keys.stop(chat_id), "1", px=STOP_KEY_TTL_MS)
        pipe.publish(keys.stop_channel, chat_id)
        return await pipe.execute()

    async with naming_redis(redis):
        res = await retried(send)
    return int(res[1])


class ChatRunner:
    """Runs requests with a `RedisEventHandler` and cancels them on a stop from anywhere.

    `await start()` subscribes to stops (and keeps resubscribing while Redis is down);
    `launch(chat_id, start)` runs a request in the background, not tied to any client connection
    (with Redis, a client that leaves may come back: only stop cancels); `await aclose()` cancels
    what still runs and waits for its final events to be written.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        options: RedisOptions = DEFAULT_OPTIONS,
        owner: str | None = None,
    ) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self.options = options
        self.keys = options.keys
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    # ---------------------------------------------------------------- stop broadcast
    async def start(self, timeout: float = 5.0) -> None:
        """Subscribe to stops; returns once subscribed (or after `timeout`, retrying behind)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="lmstream-redis-stop-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.stop_channel)
                self._subscribed.set()
                delay = 0.1
                # a stop broadcast while we were not subscribed was missed: its key is still there
                await self._recheck_stops()
                while True:
                    msg = await pubsub.get_message(timeout=5.0)
                    if msg and msg.get("type") == "message":
                        self._stop_local(s(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or refusing: never give up listening
                self._subscribed.clear()
                logger.warning("lmstream: stop listener lost Redis (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    async def _recheck_stops(self) -> None:
        """Cancel the running chats whose stop key is set (stops sent while unsubscribed)."""
        chats = self.running
        if not chats:
            return
        flags = await self.redis.mget([self.keys.stop(c) for c in chats])
        for chat_id, flag in zip(chats, flags, strict=True):
            if flag is not None:
                logger.info("lmstream: chat %r was stopped while the stop subscription reconnected", chat_id)
                self._stop_local(chat_id)

    def _stop_local(self, chat_id: str) -> bool:
        task = self._tasks.get(chat_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    @property
    def running(self) -> list[str]:
        return [c for c, t in self._tasks.items() if not t.done()]

    # ---------------------------------------------------------------- running
    async def launch(self, chat_id: str, start: Start, *, clear_stop: bool = True) -> asyncio.Task[RedisEventHandler]:
        """Start a request in a background task the runner owns, not tied to any client
        connection. Returns once the chat's stream is claimed (old stream cleared, lease held), so
        a reader that starts right after sees this request, never the previous one."""
        handler, stopped = await self._prepare(chat_id, clear_stop)
        task = asyncio.create_task(self._drive(chat_id, handler, start, stopped), name=f"lmstream-chat-{chat_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def run(
        self, chat_id: str, start: Start, *, clear_stop: bool = True, claim: str | None = None
    ) -> RedisEventHandler:
        """Run `start(emitter)` (e.g. ``lambda em: lmrp.process(..., event_emitter=em)``) with the
        chat's events going to Redis; returns once every event is written. Never raises for the
        request's own failure: that is the stream's `error` event. Raises `RedisUnavailableError`
        when Redis is down before the request starts.

        With `claim` (a queued job: the lease value the queue left), the chat is taken over with
        the request's first event instead of before it starts: the queue's lease keeps the chat
        until then, so a stall while the request starts (imports, a TLS context, a slow first
        token) can never let a short producer lease expire. `handler.claimed` tells whether it was."""
        handler, stopped = await self._prepare(chat_id, clear_stop, claim)
        return await self._drive(chat_id, handler, start, stopped)

    async def _prepare(
        self, chat_id: str, clear_stop: bool, claim: str | None = None
    ) -> tuple[RedisEventHandler, bool]:
        handler = RedisEventHandler(self.redis, chat_id, options=self.options, owner=self.owner, claim=claim)
        old = self._tasks.get(chat_id)
        if old is not None and not old.done():
            old.cancel()  # one request per chat: a new one replaces the old
        stop_key = self.keys.stop(chat_id)
        r = Retrying(self.redis)  # both calls are safe to repeat
        async with naming_redis(self.redis):
            if clear_stop:
                await r.delete(stop_key)
                stopped = False
            else:
                stopped = bool(await r.exists(stop_key))
        if claim is None:
            await handler.start()
        return handler, stopped

    async def _drive(self, chat_id: str, handler: RedisEventHandler, start: Start, stopped: bool) -> RedisEventHandler:
        emitter = EventEmitter([handler])
        task: asyncio.Task[Any] = asyncio.create_task(_call(start, emitter))
        handler.on_error = lambda _exc: task.cancel()
        self._tasks[chat_id] = task
        if stopped:
            task.cancel()
        failure: BaseException | None = None
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if not task.done():  # we were cancelled, not the request: stop it too
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(task), 2.0)
                failure = exc
            else:
                failure = exc
        except BaseException as exc:
            failure = exc
        finally:
            if self._tasks.get(chat_id) is task:
                del self._tasks[chat_id]
        if not handler.ended:
            # The request ended without its own done/error (it failed before it started, or it
            # was cancelled before it ran): end the stream anyway, so no reader waits.
            cancelled = isinstance(failure, asyncio.CancelledError)
            text = "request stopped" if cancelled else redact(str(failure or "no result"))
            handler.emit_nowait(
                Event(
                    text,
                    EventType.ERROR,
                    EventLevel.ERROR,
                    {"error_type": type(failure).__name__ if failure else "Error"},
                )
            )
        await handler.aclose()
        return handler

    async def aclose(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=5.0)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException):
                await self._listener
            self._listener = None


async def _call(start: Start, emitter: EventEmitter) -> Any:
    return await start(emitter)
