"""`ResponseCache`: answer a repeated question once, and an identical question in flight once.

    lmrp = LMRequestProcessor(builder, invoker, cache=ResponseCache(ttl=600))

A request is looked up by its normalised form (`cache.key`). A stored answer is replayed as
the same events, in order, at the configured pace; an identical request already running is
joined (one upstream call for all); otherwise this request generates, and a clean finish is
stored. The store is the process's memory (LRU, `max_bytes`) or Redis (shared by every node;
a node also joins a generation running on another through its Redis stream).

Modules: `key` (the request, normalised and hashed), `entry` (a finished answer as bytes: its
events with their timing, and its `LMOutput`), `flight` (one generation shared by identical
requests in flight), `replay` (a recorded answer put back on a request, paced), `memory` (the
in-process LRU store), `disk` (a directory of entries that outlive the process), `redis_store`
(entries every node shares, and generations a node on another machine joins).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from ..cost import Cost
from ..engine.lifecycle import RequestContext, reset_current, set_current
from ..errors import ConfigurationError, LMStreamError
from ..event_values import CacheValue
from ..events import EventEmitter
from ..types import LMOutput
from .disk import DirectoryStore, default_directory
from .entry import Entry, decode, encode
from .flight import Flight, Recorder
from .key import deterministic, request_key
from .memory import MemoryStore
from .replay import Pacing, replay_entry

__all__ = [
    "JOB_KEY",
    "CacheStore",
    "DirectoryStore",
    "MemoryStore",
    "Pacing",
    "ResponseCache",
    "default_directory",
    "deterministic",
    "job_context",
    "request_context",
    "request_key",
    "set_request_context",
]

logger = logging.getLogger("lmstream")

Generate = Callable[[RequestContext], Awaitable[LMOutput]]

#: (tenant, bypass) of the requests started in this context: set by a server for the HTTP
#: request it serves, so every route (and every task it starts) keys and bypasses alike
_context: contextvars.ContextVar[tuple[str | None, bool]] = contextvars.ContextVar(
    "lmstream_cache_context", default=(None, False)
)


#: where a queued job carries the web node's cache context to a worker: {"tenant", "bypass"}, set
#: from the request the node authenticated (a client's own value is dropped there)
JOB_KEY = "_cache"


def job_context() -> dict[str, Any]:
    """The cache context of the request being served, for a job a worker will run."""
    tenant, bypass = _context.get()
    return {"tenant": tenant, "bypass": bypass}


def set_request_context(tenant: str | None, bypass: bool = False) -> None:
    """For a server: requests started from here on (in this task, and tasks it creates) belong
    to `tenant` (their answers are shared with that tenant only) and, with `bypass`, neither
    read nor write the cache (HTTP `Cache-Control: no-cache`)."""
    _context.set((tenant, bypass))


def request_context() -> tuple[str | None, bool]:
    """The (tenant, bypass) a server set for the request being served; (None, False) elsewhere."""
    return _context.get()


class CacheStore(Protocol):
    """Where entries live: bytes by key, each with a time to live."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, data: bytes, ttl: float) -> None: ...

    async def held(self) -> tuple[int | None, int | None]: ...

    async def aclose(self) -> None: ...


class ResponseCache:
    """Stored answers and shared generations for the processors it is given to.

    `store`: "memory" (this process; least recently used entries go past `max_bytes`), a Redis
    URL (`redis://...`: every node shares entries, and joins generations running elsewhere), or
    a directory (a `pathlib.Path`: answers that outlive the process, e.g. `lmstream batch --cache`).
    `ttl`: seconds an entry is served. `pacing`: how a hit is replayed: "instant", "recorded"
    (the original's gaps), "recorded:0.5" (half of them) or tokens per second (a number).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | CacheStore = "memory",
        *,
        ttl: float = 3600,
        pacing: str | float = "instant",
        max_bytes: int = 64 * 1024 * 1024,
        prefix: str = "lmstream",
        lease: float = 30.0,
    ) -> None:
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
            raise ConfigurationError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self.ttl = float(ttl)
        self.pacing = Pacing.parse(pacing)
        self.remote: Any = None  # the Redis store, which also runs shared generations across nodes
        if store == "memory":
            self.store: CacheStore = MemoryStore(max_bytes)
        elif isinstance(store, str) and store.startswith(("redis://", "rediss://", "unix://")):
            from .redis_store import RedisCacheStore

            self.store = self.remote = RedisCacheStore(store, prefix=prefix, lease=lease)
        elif isinstance(store, os.PathLike):
            self.store = DirectoryStore(store)
        elif isinstance(store, str):
            raise ConfigurationError(
                f"ResponseCache store must be 'memory', a Redis URL (redis://host:6379/0) or a directory "
                f"(a pathlib.Path), got {store!r}"
            )
        else:
            self.store = store
        self.hits = 0
        self.misses = 0
        self.joins = 0
        self._flights: dict[str, Flight] = {}

    def __repr__(self) -> str:  # never shows a Redis URL (it may hold a password)
        return f"ResponseCache(store={self.store.name!r}, ttl={self.ttl}, pacing={self.pacing.mode!r})"

    async def stats(self) -> dict[str, Any]:
        """`{"store", "hits", "misses", "joins", "bytes", "entries", "running"}` (bytes and
        entries None where the store cannot say cheaply)."""
        try:
            held, entries = await self.store.held()
        except Exception:
            held = entries = None
        return {
            "store": self.store.name,
            "hits": self.hits,
            "misses": self.misses,
            "joins": self.joins,
            "bytes": held,
            "entries": entries,
            "running": len(self._flights),
        }

    async def aclose(self) -> None:
        await self.store.aclose()

    async def serve(
        self,
        ctx: RequestContext,
        key: str,
        generate: Generate,
        cacheable: Callable[[LMOutput], bool],
    ) -> LMOutput:
        """This request's answer: a stored one replayed, a running one joined, or a new one
        generated (and stored when `cacheable(output)`)."""
        started = time.perf_counter()
        entry = await self._lookup(key)
        if entry is not None:
            self.hits += 1
            await replay_entry(entry, ctx, self.pacing)
            return _served(entry.output, ctx, started, hit=True, joined=False, age=time.time() - entry.created)
        flight = self._flights.get(key)
        if flight is not None:
            self.joins += 1
            return await self._read(flight, ctx, started, joined=True)
        run = None
        if self.remote is not None:
            found = await self._remote(key, ctx, started)
            if isinstance(found, LMOutput):
                return found
            run = found
        self.misses += 1
        flight = self._flights[key] = Flight(key)
        flight.run = run
        flight.task = asyncio.create_task(self._generate(flight, generate, cacheable))
        return await self._read(flight, ctx, started, joined=False)

    async def _remote(self, key: str, ctx: RequestContext, started: float) -> LMOutput | str | None:
        """With the Redis store: the answer of a run on another node (joined), or this node's
        run id when it is to generate (it holds the lease), or None when Redis cannot say."""
        remote = self.remote
        try:
            for _ in range(3):
                run: str | None = await remote.claim(key)
                if run is not None:
                    return run
                followed = await remote.follow(key, ctx, self._joined)
                if followed is not None:
                    output, age = followed
                    return _served(output, ctx, started, hit=False, joined=True, age=age)
                entry = await self._lookup(key)  # that run ended between our two looks: stored?
                if entry is not None:
                    self.hits += 1
                    await replay_entry(entry, ctx, self.pacing)
                    return _served(entry.output, ctx, started, hit=True, joined=False, age=time.time() - entry.created)
        except LMStreamError:
            raise
        except Exception as exc:  # Redis unreachable: generate here, unshared
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # the request was cancelled while Redis was answering (the client may turn the
                # cancellation into a connection error): it ends here, it does not generate
                raise asyncio.CancelledError from exc
            logger.warning("response cache: Redis coordination failed (%s); generating here", type(exc).__name__)
        return None

    def _joined(self) -> None:
        self.joins += 1

    async def _lookup(self, key: str) -> Entry | None:
        try:
            raw = await self.store.get(key)
        except Exception as exc:  # a cache that cannot answer is a miss, never a failed request
            logger.warning("response cache: lookup failed (%s); answering without the cache", type(exc).__name__)
            return None
        return decode(raw) if raw is not None else None

    async def _read(self, flight: Flight, ctx: RequestContext, started: float, joined: bool) -> LMOutput:
        flight.readers += 1
        try:
            await flight.follow(ctx)
        finally:
            flight.leave()
            if flight.readers <= 0 and not flight.done:
                self._forget(flight)  # being cancelled: a request arriving now starts afresh
        error = flight.error
        if isinstance(error, asyncio.CancelledError):
            raise LMStreamError("the shared generation this request joined was cancelled") from None
        if error is not None:
            raise error
        assert flight.output is not None
        age = None if not joined else time.time() - flight.wall
        if not joined:  # the request that started the generation made its model calls
            ctx.attempts.extend(flight.attempts)
            out = replace(flight.output, usage=replace(flight.output.usage), cache=_marker(False, False, None))
            return out
        return _served(flight.output, ctx, started, hit=False, joined=True, age=age)

    async def _generate(self, flight: Flight, generate: Generate, cacheable: Callable[[LMOutput], bool]) -> None:
        gen_ctx = RequestContext(EventEmitter([Recorder(flight)], handler_timeout=None), ())
        flight.attempts = gen_ctx.attempts
        token = set_current(gen_ctx)
        remote = self.remote
        publishing = None
        try:
            if remote is not None and flight.run is not None:
                publishing = remote.publisher(flight, flight.key, flight.run)
            output = await generate(gen_ctx)
        except asyncio.CancelledError as exc:
            flight.finish(None, exc)
            if publishing is not None:
                await publishing.fail("cancelled")
            self._forget(flight)
            raise
        except BaseException as exc:
            flight.finish(None, exc)
            if publishing is not None:
                await publishing.fail(str(exc))
            self._forget(flight)
            return
        finally:
            reset_current(token)
        if cacheable(output):
            await self._store(flight, output)
        if publishing is not None:
            await publishing.finish(output)
        flight.finish(output, None)
        self._forget(flight)

    async def _store(self, flight: Flight, output: LMOutput) -> None:
        try:
            data = encode(flight.records, output)
        except (TypeError, ValueError):
            return  # a value that is not JSON data: served live, not stored
        try:
            await self.store.put(flight.key, data, self.ttl)
        except Exception as exc:
            logger.warning("response cache: store failed (%s); the answer was not kept", type(exc).__name__)

    def _forget(self, flight: Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]


def _marker(hit: bool, joined: bool, age: float | None) -> CacheValue:
    return {"hit": hit, "joined": joined, "age": None if age is None else round(age, 3)}


def _served(
    original: LMOutput, ctx: RequestContext, started: float, *, hit: bool, joined: bool, age: float | None
) -> LMOutput:
    """A copy of `original` for a request that did not pay for it: cost 0, `saved_cost` the
    original's, its own timings, and the `cache` marker."""
    usage = replace(original.usage, cost=Cost(0.0), saved_cost=original.usage.cost)
    now = time.perf_counter()
    ttft = None if ctx.first_token_at is None else ctx.first_token_at - ctx.started
    return replace(
        original,
        usage=usage,
        tool_calls=list(original.tool_calls),
        thinking_blocks=list(original.thinking_blocks),
        duration=now - min(started, ctx.started),
        time_to_first_token=ttft,
        cache=_marker(hit, joined, age),
    )
