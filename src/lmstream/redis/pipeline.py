"""One pipelined round trip for the flushes of every chat a process is writing.

Why: with a round trip per chat, 1,000 concurrent answers keep ~1,000 commands in flight, so the
client opens ~1,000 connections and every token waits behind the others' round trips. Here the
handlers of one client hand their flushes to a shared writer; whatever is due while a pipeline
is in flight goes out together in the next one. Each chat still has at most one flush in flight,
so its entries stay in order.

After the scripts, the same pipeline PUBLISHes the keys that got an entry, one message per channel
per round trip (see `StreamHub`): readers fetch only the streams that changed.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .scripts import FLUSH_SCRIPT, FlushArgs

__all__ = ["SharedWriter"]

_writers: weakref.WeakKeyDictionary[Any, SharedWriter] = weakref.WeakKeyDictionary()


class SharedWriter:
    """Runs the flush script for many chats per round trip (`EVALSHA`s in one pipeline)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.loop = asyncio.get_running_loop()
        self.pending: list[tuple[list[Any], FlushArgs, asyncio.Future[Any], str | None]] = []
        self.sha: str | None = None
        self.round_trips = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, redis: Any) -> SharedWriter:
        """The writer of this client on the running loop."""
        w = _writers.get(redis)
        if w is None or w.loop is not asyncio.get_running_loop():
            w = _writers[redis] = cls(redis)
        return w

    def submit(self, keys: list[Any], args: FlushArgs, notify: str | None = None) -> asyncio.Future[Any]:
        """Run the flush script; with `notify`, PUBLISH the stream key (`keys[0]`) on that channel after it."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending.append((keys, args, fut, notify))
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run(), name="lmstream-redis-writer")
        return fut

    async def _run(self) -> None:
        from redis.exceptions import NoScriptError

        while self.pending:
            batch, self.pending = self.pending, []
            try:
                if self.sha is None:
                    self.sha = str(await self.redis.script_load(FLUSH_SCRIPT))
                pipe = self.redis.pipeline(transaction=False)
                channels: dict[str, list[str]] = {}
                for keys, args, _, notify in batch:
                    pipe.evalsha(self.sha, len(keys), *keys, *args.argv())
                    if notify is not None:
                        channels.setdefault(notify, []).append(str(keys[0]))
                for channel, changed in channels.items():  # after the scripts: the entries exist
                    pipe.publish(channel, "\n".join(changed))
                results = (await pipe.execute(raise_on_error=False))[: len(batch)]
                self.round_trips += 1
            except asyncio.CancelledError:
                for _, _, fut, _ in batch:
                    fut.cancel()
                raise
            except Exception as exc:  # the whole round trip failed: every flush in it may retry
                for _, _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (keys, args, fut, notify), res in zip(batch, results, strict=True):
                if isinstance(res, NoScriptError):  # Redis restarted: load the script, send again
                    self.sha = None
                    self.pending.append((keys, args, fut, notify))
                elif fut.done():
                    continue
                elif isinstance(res, Exception):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
