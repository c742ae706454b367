"""The Redis store: entries every node shares, and generations a node on another machine joins.

Keys (all under ``{prefix}:cache:``, the family before the id, so they never meet a chat's keys;
ids are SHA-256 digests of the request or random run ids, never a client's text):

* ``{prefix}:cache:entry:{key}``: a finished answer (the bytes of `cache.entry`), with the TTL;
* ``{prefix}:cache:lease:{key}``: the id of the run generating that answer now; set with NX
  (one node wins), renewed while the run lives, deleted when it ends;
* ``{prefix}:cache:run:{run}``: the run's events as a Redis stream (field ``e``: one event;
  field ``end``: the output, or ``error``), kept a minute after the end for late readers;
* ``{prefix}:cache:readers:{run}``: how many requests on other nodes read that run now (it
  goes on while any does, though every request on its own node has left).

Redis's own memory policy bounds the entries (``maxmemory-policy allkeys-lru`` evicts them).
This module speaks to Redis with the `redis` client directly: `lmstream.redis` is a transport,
above the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _json
from ..engine.lifecycle import RequestContext
from ..errors import LMStreamError
from ..types import LMOutput
from .entry import _output, _unoutput
from .replay import Replayer

if TYPE_CHECKING:
    from .flight import Flight

__all__ = ["RedisCacheStore"]

logger = logging.getLogger("lmstream")

#: seconds a finished run's stream stays readable (a reader that found the lease just before the end)
RUN_KEEP = 60
#: seconds between looks for readers on other nodes once every reader here has left
ORPHAN_CHECK = 0.5
_DEL_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _still_wanted() -> None:
    """Raise the cancellation of a reader that left, when a call swallowed it: redis-py's
    `xread` can return the reply it was reading although its task was cancelled meanwhile
    (seen with redis-py 8.2: the reader then read on to the end, keeping the run alive)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisCacheStore:
    """Entries in Redis with their TTL, plus the cross-node half of coalescing."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "lmstream", lease: float = 30.0) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - the extra is installed in development
            from ..errors import ConfigurationError

            raise ConfigurationError(
                "a Redis response cache needs the redis extra: pip install 'lmstream[redis]'"
            ) from exc
        self._client: Any = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.lease = lease
        self._pending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:  # the URL may hold a password
        return f"RedisCacheStore(prefix={self.prefix!r})"

    # ----- keys
    def entry_key(self, key: str) -> str:
        return f"{self.prefix}:cache:entry:{key}"

    def lease_key(self, key: str) -> str:
        return f"{self.prefix}:cache:lease:{key}"

    def run_key(self, run: str) -> str:
        return f"{self.prefix}:cache:run:{run}"

    def readers_key(self, run: str) -> str:
        return f"{self.prefix}:cache:readers:{run}"

    # ----- the store
    async def get(self, key: str) -> bytes | None:
        data = await self._client.get(self.entry_key(key))
        return None if data is None else bytes(data)

    async def put(self, key: str, data: bytes, ttl: float) -> None:
        await self._client.set(self.entry_key(key), data, px=max(1, int(ttl * 1000)))

    async def held(self) -> tuple[int | None, int | None]:
        """Unknown cheaply (Redis bounds the entries itself)."""
        return None, None

    async def aclose(self) -> None:
        await self._client.aclose()

    # ----- coalescing across nodes
    async def claim(self, key: str) -> str | None:
        """A new run id when this node is to generate `key` (it holds the lease), else None
        (another node's run holds it: `follow` it)."""
        run = os.urandom(8).hex()
        ok = await self._client.set(self.lease_key(key), run, nx=True, px=int(self.lease * 1000))
        return run if ok else None

    async def follow(
        self, key: str, ctx: RequestContext, on_join: Callable[[], None] | None = None
    ) -> tuple[LMOutput, float] | None:
        """Replay the run that holds `key`'s lease into `ctx`, live, to its end: its output and
        its age. None when no run holds the lease any more and none of it was replayed."""
        client = self._client
        run = await client.get(self.lease_key(key))
        if run is None:
            return None
        stream, readers = self.run_key(run.decode()), self.readers_key(run.decode())
        pipe = client.pipeline(transaction=False)
        pipe.incr(readers)
        pipe.pexpire(readers, int(self.lease * 2000))
        await pipe.execute()
        try:
            return await self._follow(key, stream, readers, ctx, on_join)
        finally:
            # not awaited here: this frame may be unwinding a cancellation (a reader that left)
            task = asyncio.create_task(self._uncount(readers))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _uncount(self, readers: str) -> None:
        try:
            await self._client.decr(readers)
        except Exception:  # a reader gone uncounted only lets the run finish (the key expires)
            logger.debug("response cache: could not uncount a reader", exc_info=True)

    async def _follow(
        self, key: str, stream: str, readers: str, ctx: RequestContext, on_join: Callable[[], None] | None
    ) -> tuple[LMOutput, float] | None:
        client = self._client
        rep = Replayer(ctx)
        counted = time.monotonic()
        last = "0-0"
        seen = False
        quiet_since = time.monotonic()
        while True:
            got = await client.xread({stream: last}, count=512, block=int(min(self.lease, 1.0) * 1000))
            _still_wanted()
            if time.monotonic() - counted >= self.lease / 3:  # still reading: keep this reader counted
                counted = time.monotonic()
                await client.pexpire(readers, int(self.lease * 2000))
            if not got:
                if time.monotonic() - quiet_since < self.lease / 3:
                    continue
                if not await client.exists(self.lease_key(key)):  # the generating node is gone
                    if not seen:
                        return None
                    raise LMStreamError("the node generating this shared answer stopped before it finished")
                quiet_since = time.monotonic()
                continue
            quiet_since = time.monotonic()
            for entry_id, fields in got[0][1]:
                last = entry_id
                if b"e" in fields:
                    _, type_, value, level, block, extra = _json.loads(fields[b"e"])
                    if not seen and on_join is not None:
                        on_join()  # this request shares that run now
                    seen = True
                    await rep.emit(type_, value, level, block, extra)
                elif b"end" in fields:
                    doc = _json.loads(fields[b"end"])
                    if "error" in doc:
                        raise LMStreamError(f"the shared answer this request joined failed: {doc['error']}")
                    return _unoutput(doc["output"]), time.time() - doc["wall"]

    def publisher(self, flight: Flight, key: str, run: str) -> Publisher:
        return Publisher(self, flight, key, run)


class Publisher:
    """Copies a running generation's events to its Redis stream for other nodes, and keeps
    its lease alive; `finish`/`fail` write the end and let the lease go."""

    def __init__(self, store: RedisCacheStore, flight: Flight, key: str, run: str) -> None:
        self.store = store
        self.flight = flight
        self.key = key
        self.stream = store.run_key(run)
        self.run = run
        self._sent = 0
        self._blocks: set[Any] = set()
        self._stopping = False
        self._checked = 0.0
        flight.shared = True
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        """Send what the generation recorded, in batches, as it comes; renew the lease."""
        client, flight = self.store._client, self.flight
        renew_every = self.store.lease / 3
        renewed = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(flight.changed(), timeout=min(renew_every, ORPHAN_CHECK))
            except TimeoutError:
                pass
            await self._send()
            if self._stopping:
                return
            if time.monotonic() - renewed >= renew_every:
                renewed = time.monotonic()
                await client.pexpire(self.store.lease_key(self.key), int(self.store.lease * 1000))
            if flight.readers <= 0 and not flight.done and await self._orphaned():
                assert flight.task is not None
                flight.task.cancel()  # nobody reads it, here or elsewhere: the upstream call closes
                return

    async def _orphaned(self) -> bool:
        """No reader on another node (checked at most every ORPHAN_CHECK seconds)."""
        now = time.monotonic()
        if now - self._checked < ORPHAN_CHECK and self._checked:
            return False
        self._checked = now
        n = await self.store._client.get(self.store.readers_key(self.run))
        return n is None or int(n) <= 0

    async def _send(self) -> None:
        records = self.flight.records
        if self._sent >= len(records):
            return
        pipe = self.store._client.pipeline(transaction=False)
        start, self._sent = self._sent, len(records)
        for t, type_, value, level, meta in records[start:]:
            block = meta.get("block_id")
            extra = None
            if block is None or block not in self._blocks:
                self._blocks.add(block)
                extra = {k: v for k, v in meta.items() if k not in ("request_id", "block_id")}
            pipe.xadd(self.stream, {"e": _json.dumpb([t, str(type_), value, int(level), block, extra])})
        pipe.pexpire(self.stream, int(max(self.store.lease * 2, RUN_KEEP) * 1000))
        await pipe.execute()

    async def _end(self, doc: dict[str, Any]) -> None:
        self._stopping = True
        self.flight.poke()
        client = self.store._client
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)  # the pump sends what is left, then stops
            await self._send()
            pipe = client.pipeline(transaction=False)
            pipe.xadd(self.stream, {"end": _json.dumpb(doc)})
            pipe.expire(self.stream, RUN_KEEP)
            pipe.eval(_DEL_IF_OURS, 1, self.store.lease_key(self.key), self.run)
            await pipe.execute()
        except Exception as exc:  # the other nodes' readers see the lease lapse instead
            logger.warning("response cache: could not end a shared run in Redis (%s)", type(exc).__name__)

    async def finish(self, output: LMOutput) -> None:
        await self._end({"output": _output(output), "wall": self.flight.wall})

    async def fail(self, why: str) -> None:
        await self._end({"error": why})
