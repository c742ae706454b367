"""`StreamHub`: the live reads of every reader of a process share one connection, instead of one each.

Why: a web node following 1,000 live answers with one blocked `XREAD` per reader holds 1,000
Redis connections and sends one command per entry per reader.

Two modes. With a `channel` (the default of `RedisStreamReader(multiplex=True)`), producers
PUBLISH the keys they appended to; the hub subscribes once and, per notification batch, sends one
non-blocking `XREAD` over only the streams that changed, so each read costs O(changed), not
O(followed): one `XREAD BLOCK` over 1,000 keys costs the reader ~10 ms of Python per call and
cannot keep up with 2,000 entries/s. Every followed stream is still read once per `block_ms` (in
slices of 100 keys spread over the period; the sweep restarts when the subscription reconnects),
so a lost notification, or a producer that does not publish, delays entries by about that period
at most, never loses them.

Without a channel: one `XREAD BLOCK` over every followed stream (`XREAD ... STREAMS k1 k2 ... id1
id2 ...`); a reader joining interrupts the current block (`CLIENT UNBLOCK`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..errors import RedisUnavailableError
from .codec import s
from .connection import RETRY_DELAYS, redis_errors, store_errors, unavailable

__all__ = ["Follower", "StreamHub"]

_SWEEP_SLICE = 100  # keys per safety-net XREAD


def _idt(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Follower:
    """One reader's place in the hub: entries after `last` arrive in `entries`."""

    __slots__ = ("_wake", "entries", "error", "key", "last")

    def __init__(self, key: str, last: str) -> None:
        self.key = key
        self.last = last
        self.entries: list[tuple[Any, Any]] = []
        self.error: BaseException | None = None
        self._wake = asyncio.Event()

    def push(self, entries: list[tuple[Any, Any]]) -> None:
        last = _idt(self.last)
        new = [e for e in entries if _idt(s(e[0])) > last]
        if new:
            self.entries.extend(new)
            self.last = s(new[-1][0])
            self._wake.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._wake.set()

    async def next(self, timeout: float) -> list[tuple[Any, Any]]:
        """The entries that arrived (waiting up to `timeout` s for some); [] on timeout."""
        if not self.entries and self.error is None:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        if self.error is not None:
            raise self.error
        out, self.entries = self.entries, []
        return out


class StreamHub:
    """Multiplexes live reads of one Redis client. `await aclose()` when done."""

    def __init__(self, redis: Any, *, block_ms: int = 1000, page: int = 128, channel: str | None = None) -> None:
        self.redis: Any = redis
        self.channel = channel
        self._dirty: set[str] = set()  # followed keys notified (or joined) since the last read
        self._poke = asyncio.Event()
        self._sweep: list[str] = []  # followed keys the safety net has yet to read this period
        self._sweep_at = 0.0  # loop time of its next slice (notify mode)
        self._sweep_step = 0.0
        self.block_ms = block_ms
        self.page = page
        self.followers: dict[str, set[Follower]] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn_id: int | None = None
        self._blocked = False
        self._kicked = False
        self._exiting = False
        self.reads = 0  #: XREAD commands sent (for tests and benchmarks)
        self.full_reads = 0  #: of which by the safety net (notify mode: slices of every followed stream)

    def follow(self, key: str, last: str) -> Follower:
        f = Follower(key, last)
        self.followers.setdefault(key, set()).add(f)
        if self._task is None or self._task.done() or self._exiting:
            self._exiting = False
            run = self._run if self.channel is None else self._run_notified
            self._task = asyncio.create_task(run(), name="lmstream-redis-hub")
        elif self.channel is None:
            self._kick()
        self.poke(key)
        return f

    def poke(self, key: str) -> None:
        """Read `key` at once (notify mode): a reader joined, or wrote the stream itself."""
        if self.channel is not None:
            self._dirty.add(key)
            self._poke.set()

    def unfollow(self, f: Follower) -> None:
        fs = self.followers.get(f.key)
        if fs is not None:
            fs.discard(f)
            if not fs:
                del self.followers[f.key]

    def _kick(self) -> None:
        """Interrupt the current block so a new stream (or position) is read at once; one
        interruption per block however many readers join meanwhile."""
        if self._conn_id is not None and self._blocked and not self._kicked:
            self._kicked = True
            task = asyncio.create_task(self._unblock(self._conn_id))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _unblock(self, conn_id: int) -> None:
        await self.redis.client_unblock(conn_id)

    async def _run(self) -> None:
        conn = self.redis.client()  # one dedicated connection: CLIENT UNBLOCK needs its id
        failures = 0
        try:
            while True:
                try:
                    if self._conn_id is None:
                        self._conn_id = int(await conn.client_id())
                    if not self.followers:
                        self._exiting = True  # a follow() from now on starts a new loop
                        break
                    streams = {k: min((f.last for f in fs), key=_idt) for k, fs in self.followers.items()}
                    self._blocked = True
                    self._kicked = False
                    try:
                        res = await conn.xread(streams, count=self.page, block=self.block_ms)
                    finally:
                        self._blocked = False
                    failures = 0
                except redis_errors():
                    # a stale connection after a restart, or a blip: reconnect and read again (reads
                    # are idempotent); after a few tries Redis is down: every reader gets the error
                    self._conn_id = None
                    if failures >= len(RETRY_DELAYS):
                        raise
                    await asyncio.sleep(RETRY_DELAYS[failures])
                    failures += 1
                    continue
                self.reads += 1
                for key_raw, entries in res or []:
                    key = s(key_raw)
                    for f in list(self.followers.get(key, ())):
                        if _idt(streams.get(key, "0-0")) <= _idt(f.last):
                            f.push(list(entries))
                        # else: it joined behind this read (which began after its position): it is
                        # read from its own position next time
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail_all(exc)
        finally:
            self._conn_id = None
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.aclose())

    async def _listen(self, channel: str) -> None:
        """Mark notified keys dirty; after each (re)subscription, restart the safety net's sweep:
        whatever was published while unsubscribed is caught by it within a period."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                self._sweep, self._sweep_at = [], 0.0
                self._poke.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    followed = self.followers
                    for key in s(msg["data"]).split("\n"):
                        if key in followed:
                            self._dirty.add(key)
                    if self._dirty:
                        self._poke.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # the main loop reports Redis failures; here: retry, full read after
                await asyncio.sleep(0.25)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    async def _run_notified(self) -> None:
        assert self.channel is not None
        loop = asyncio.get_running_loop()
        conn = self.redis.client()
        listener = asyncio.create_task(self._listen(self.channel), name="lmstream-redis-hub-listen")
        failures = 0
        self._sweep, self._sweep_at = [], 0.0
        try:
            while True:
                if not self.followers:
                    self._exiting = True  # a follow() from now on starts a new loop
                    break
                if loop.time() >= self._sweep_at:
                    # the safety net, in slices spread over the period: reading 1,000 keys at once
                    # would stall every announced read behind it for ~10 ms
                    if not self._sweep:
                        self._sweep = list(self.followers)
                        slices = -(-len(self._sweep) // _SWEEP_SLICE)
                        self._sweep_step = self.block_ms / 1000 / max(1, slices)
                    keys = [k for k in self._sweep[:_SWEEP_SLICE] if k in self.followers]
                    del self._sweep[:_SWEEP_SLICE]
                    self._dirty.difference_update(keys)
                    self._sweep_at = loop.time() + self._sweep_step
                    full = True
                    if not keys:
                        continue
                else:
                    if not self._dirty:
                        self._poke.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout_at(self._sweep_at):
                                await self._poke.wait()
                        continue
                    keys = [k for k in self._dirty if k in self.followers]
                    self._dirty.clear()
                    full = False
                    if not keys:
                        continue
                streams = {k: min((f.last for f in self.followers[k]), key=_idt) for k in keys}
                try:
                    res = await conn.xread(streams, count=self.page)
                    failures = 0
                except redis_errors():
                    self._dirty.update(keys)  # read them again after reconnecting
                    if failures >= len(RETRY_DELAYS):
                        raise
                    await asyncio.sleep(RETRY_DELAYS[failures])
                    failures += 1
                    continue
                self.reads += 1
                self.full_reads += full
                for key_raw, entries in res or []:
                    key = s(key_raw)
                    if len(entries) >= self.page:
                        self._dirty.add(key)  # more than a page waiting: read on
                    for f in list(self.followers.get(key, ())):
                        if _idt(streams[key]) <= _idt(f.last):
                            f.push(list(entries))
                        else:  # it joined behind this read (begun after its position): read it from there
                            self._dirty.add(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail_all(exc)
        finally:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.aclose())

    def _fail_all(self, exc: Exception) -> None:
        typed = isinstance(exc, RedisUnavailableError) or not isinstance(exc, store_errors())
        err = exc if typed else unavailable(self.redis, exc)  # Redis refusing too: one typed error
        for fs in self.followers.values():
            for f in fs:
                f.fail(err)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
