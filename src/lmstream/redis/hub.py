"""`StreamHub`: one `XREAD BLOCK` for every live reader of a process, instead of one each.

Why: a web node following 1,000 live answers with one blocked `XREAD` per reader holds 1,000
Redis connections and sends one command per entry per reader. The hub keeps one dedicated
connection and reads every followed stream in one command (`XREAD ... STREAMS k1 k2 ... id1 id2 ...`),
handing each reader the entries after its own position. A reader joining interrupts the current
block (`CLIENT UNBLOCK`) so its stream is included at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..errors import RedisUnavailableError
from ._common import RETRY_DELAYS, redis_errors, s, unavailable

__all__ = ["Follower", "StreamHub"]


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

    def __init__(self, redis: Any, *, block_ms: int = 1000, page: int = 128) -> None:
        self.redis: Any = redis
        self.block_ms = block_ms
        self.page = page
        self.followers: dict[str, set[Follower]] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn_id: int | None = None
        self._blocked = False
        self._kicked = False
        self._exiting = False
        self.reads = 0  #: XREAD commands sent (for tests and benchmarks)

    def follow(self, key: str, last: str) -> Follower:
        f = Follower(key, last)
        self.followers.setdefault(key, set()).add(f)
        if self._task is None or self._task.done() or self._exiting:
            self._exiting = False
            self._task = asyncio.create_task(self._run(), name="lmstream-redis-hub")
        else:
            self._kick()
        return f

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
                for key, entries in res or []:
                    for f in list(self.followers.get(s(key), ())):
                        f.push(list(entries))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            already = isinstance(exc, RedisUnavailableError) or not isinstance(exc, redis_errors())
            err = exc if already else unavailable(self.redis, exc)
            for fs in self.followers.values():
                for f in fs:
                    f.fail(err)
        finally:
            self._conn_id = None
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.aclose())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
