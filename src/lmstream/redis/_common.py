"""Pieces shared by the Redis transport, reader, runner and queue: key names, the entry codec,
positions (SSE ids), connecting, and turning redis-py failures into one error that names Redis.

Stream entry layout (one entry = one flush of the producer, several events):
  ``s``  sequence number of the entry's first event within the request (0-based)
  ``n``  number of events in the entry
  ``e``  JSON array of compact events
  ``t``  ``"1"`` on the last entry (the request's ``done`` or ``error``)
The ``s``/``n`` counters let a reader prove it saw every event: a gap (trimmed entries, a stream
replaced by a newer request) is detected instead of silently skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from .. import _json
from ..errors import RedisUnavailableError
from ..events import Event, EventLevel

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_PREFIX = "lmstream"
DEFAULT_TTL = 3600.0
DEFAULT_LEASE = 10.0
DEFAULT_MAXLEN = 10_000

#: event types merged into one entry until the batch is due; anything else flushes at once
BATCHED_TYPES = frozenset({"response", "thinking", "tool_call_delta", "code", "data"})


@dataclass(frozen=True)
class Keys:
    """Key names of one chat. With `hash_tag=True` every key of a chat carries ``{chat_id}`` so a
    Redis Cluster puts them in one slot (the reaper script touches two of them at once)."""

    prefix: str = DEFAULT_PREFIX
    hash_tag: bool = False

    def _base(self, chat_id: str) -> str:
        return f"{self.prefix}:{{{chat_id}}}" if self.hash_tag else f"{self.prefix}:{chat_id}"

    def stream(self, chat_id: str) -> str:
        return self._base(chat_id)

    def lease(self, chat_id: str) -> str:
        """Exists while a producer (or the queue, before a worker takes the job) owns the chat."""
        return self._base(chat_id) + ":lease"

    def stop(self, chat_id: str) -> str:
        """Set by a stop request, so a runner that starts after the broadcast still sees it."""
        return self._base(chat_id) + ":stop"

    @property
    def stop_channel(self) -> str:
        return f"{self.prefix}:stop"

    @property
    def notify_channel(self) -> str:
        """Producers PUBLISH the stream keys they appended to here (newline-separated), so a
        multiplexed reader fetches only the streams that changed (see `StreamHub`)."""
        return f"{self.prefix}:notify"

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"


class StreamItem(NamedTuple):
    """One event read back from Redis and its position: send `id` as the SSE ``id:``."""

    id: str
    event: Event


def make_position(entry_id: str, index: int) -> str:
    """``<redis-entry-id>:<index>``: names one event inside a batched entry exactly."""
    return f"{entry_id}:{index}"


def parse_position(position: str) -> tuple[str, int]:
    from ..errors import StreamGoneError

    entry_id, sep, index = position.strip().rpartition(":")
    ms, dash, seq = entry_id.partition("-")
    if not (sep and dash and ms.isdigit() and seq.isdigit() and index.isdigit()):
        raise StreamGoneError(f"not a stream position: {position!r} (expected '<ms>-<seq>:<index>')")
    return entry_id, int(index)


def s(value: Any) -> str:
    """redis-py returns bytes or str depending on `decode_responses`; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)


def field(fields: dict[Any, Any], name: str) -> Any:
    v = fields.get(name)
    return fields.get(name.encode()) if v is None else v


# ---------------------------------------------------------------- event codec


def encode_events(events: Iterable[Event]) -> bytes:
    """Compact JSON; an event whose metadata dict is the previous one's (same block) omits it."""
    out: list[dict[str, Any]] = []
    prev_meta: object = None
    for ev in events:
        d: dict[str, Any] = {"i": ev.id, "v": ev.value, "t": str(ev.type), "ts": ev._ts}
        if ev.level != EventLevel.INFO:
            d["l"] = int(ev.level)
        if ev.metadata is not prev_meta:
            d["m"] = ev.metadata
            prev_meta = ev.metadata
        out.append(d)
    return _json.dumpb(out)


def decode_events(raw: Any) -> list[Event]:
    events: list[Event] = []
    meta: dict[str, Any] = {}
    for d in _json.loads(raw):
        if "m" in d:
            meta = d["m"]
        events.append(Event(d["v"], d["t"], EventLevel(d.get("l", 2)), meta, id=d["i"], timestamp=d["ts"]))
    return events


def event_timestamp(ev: Event) -> datetime:
    return ev.timestamp


# ---------------------------------------------------------------- connecting and errors


def redact_url(url: str) -> str:
    """The URL without user or password, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return "<redis url>"


def describe(redis: Redis) -> str:
    try:
        kw = redis.connection_pool.connection_kwargs
        if "path" in kw:
            return f"unix://{kw['path']}"
        return f"redis://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
    except Exception:  # pragma: no cover - exotic clients
        return "Redis"


def connect(url: str, **kwargs: Any) -> Redis:
    """An asyncio client with bounded timeouts, so a dead Redis gives an error, never a hang."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ..errors import ConfigurationError

        raise ConfigurationError("Redis support needs redis-py: pip install 'lmstream[redis]'") from exc
    opts: dict[str, Any] = {
        "socket_connect_timeout": 3.0,
        "socket_timeout": 15.0,  # above every BLOCK we issue
        "health_check_interval": 30,
        "retry_on_timeout": False,
        # a live reader holds a connection while it blocks in XREAD: allow many (redis-py's default is 100)
        "max_connections": 10_000,
    }
    opts.update(kwargs)
    return aioredis.Redis.from_url(url, **opts)


def unavailable(redis: Redis, exc: BaseException) -> RedisUnavailableError:
    return RedisUnavailableError(f"Redis at {describe(redis)} is unavailable: {type(exc).__name__}: {exc}")


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, ConnectionError, OSError, TimeoutError)


RETRY_DELAYS = (0.05, 0.25, 1.0)


class Retrying:
    """The client's commands, retried on a connection failure: for idempotent commands only
    (reads, the reaper), where a stale pooled connection after a Redis restart must not fail a
    reader that a fresh connection would serve."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._redis, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            for delay in (*RETRY_DELAYS, None):
                try:
                    return await fn(*args, **kwargs)
                except redis_errors():
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
            raise AssertionError("unreachable")  # pragma: no cover

        return call


@contextlib.asynccontextmanager
async def naming_redis(redis: Redis) -> AsyncIterator[None]:
    """Re-raise connection failures as `RedisUnavailableError` naming the server."""
    try:
        yield
    except RedisUnavailableError:
        raise
    except redis_errors() as exc:
        raise unavailable(redis, exc) from exc


# The reaper: if nobody holds the chat's lease and its stream did not end, end it with an error
# entry. Atomic, so several readers and workers noticing at once write one error, not several.
REAP_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local f = {}
if #last > 0 then f = last[1][2] end
local s, n, t = 0, 0, nil
for i = 1, #f, 2 do
  if f[i] == 's' then s = tonumber(f[i+1]) elseif f[i] == 'n' then n = tonumber(f[i+1])
  elseif f[i] == 't' then t = f[i+1] end
end
if t == '1' then return 0 end
redis.call('XADD', KEYS[1], '*', 's', tostring(s + n), 'n', '1', 'e', ARGV[1], 't', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


# One flush = one round trip. Fenced: a producer writes only while the chat's lease holds its
# token, so a request that was replaced (or declared dead) can never append to the new stream.
# ARGV: 1 token, 2 lease ms, 3 ttl s, 4 maxlen ('' = none), 5 reset, 6 release lease, 7 renew lease,
# 8 refresh ttl, 9 terminal entry, 10 retry, then optionally 11 s, 12 n, 13 events JSON.
# A retry (the previous attempt's reply was lost) neither resets twice nor adds a batch twice.
FLUSH_SCRIPT = """
local token = ARGV[1]
local retry = ARGV[10] == '1'
local owned = redis.call('GET', KEYS[2]) == token
local reset = ARGV[5] == '1' and not (retry and owned)
if reset then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
elseif not owned then
  return -1
end
local add_batch = ARGV[13] ~= nil
if add_batch and retry then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then
    local f = last[1][2]
    for i = 1, #f, 2 do
      if f[i] == 's' and tonumber(f[i + 1]) >= tonumber(ARGV[11]) then add_batch = false end
    end
  end
end
if add_batch then
  local add = {'XADD', KEYS[1]}
  if ARGV[4] ~= '' then
    add[#add + 1] = 'MAXLEN'; add[#add + 1] = '~'; add[#add + 1] = ARGV[4]
  end
  add[#add + 1] = '*'
  add[#add + 1] = 's'; add[#add + 1] = ARGV[11]
  add[#add + 1] = 'n'; add[#add + 1] = ARGV[12]
  add[#add + 1] = 'e'; add[#add + 1] = ARGV[13]
  if ARGV[9] == '1' then add[#add + 1] = 't'; add[#add + 1] = '1' end
  redis.call(unpack(add))
end
if ARGV[8] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[2])
elseif ARGV[7] == '1' and not reset then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
