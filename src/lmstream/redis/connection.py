"""Connecting to Redis, and turning redis-py's failures into one error that names the server.

`connect()` gives a client with bounded timeouts, so a dead Redis is an error, never a hang.
Failures of calls that are safe to repeat (reads, the reaper, lease checks) are retried on a
fresh connection (`retried`, `Retrying`): after a Redis restart every pooled connection is
stale, and the first request after it must not fail where a new connection would serve it.
redis-py's own retries stay off (a client from `from_url` has none), so a call that is not safe
to repeat is never repeated behind our back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ..errors import RedisUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "RETRY_DELAYS",
    "Retrying",
    "connect",
    "describe",
    "naming_redis",
    "redact_url",
    "redis_errors",
    "retried",
    "store_errors",
    "unavailable",
]


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
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ..errors import ConfigurationError

        raise ConfigurationError("Redis support needs redis-py: pip install 'lmstream[redis]'") from exc
    opts: dict[str, Any] = {
        # no blind retries: a flush or an enqueue repeated without its retry flag or claim could
        # write twice; the calls that are safe to repeat are retried by lmstream (`retried`)
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": 3.0,
        "socket_timeout": 15.0,  # above every BLOCK we issue
        "health_check_interval": 30,
        "retry_on_timeout": False,
        # a live reader holds a connection while it blocks in XREAD: allow many (redis-py's default is 100)
        "max_connections": 10_000,
    }
    opts.update(kwargs)
    return aioredis.Redis.from_url(url, **opts)


_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ", re.S)


def unavailable(redis: Redis, exc: BaseException) -> RedisUnavailableError:
    """The error for a failed call: Redis unreachable, or refusing (``OOM``, read-only, loading ...)."""
    import redis.exceptions as rex

    if isinstance(exc, rex.ResponseError):
        # a pipeline's error names the command and its arguments (keys, tokens): keep only Redis's reason
        reason = _PIPELINE_PREFIX.sub("", str(exc)).strip("()\"',. ")
        return RedisUnavailableError(f"Redis at {describe(redis)} refused the command ({type(exc).__name__}): {reason}")
    return RedisUnavailableError(f"Redis at {describe(redis)} is unavailable: {type(exc).__name__}: {exc}")


def redis_errors() -> tuple[type[BaseException], ...]:
    """Connection failures: what a call on a fresh connection may not see again."""
    import redis.exceptions as rex

    return (rex.ConnectionError, rex.TimeoutError, ConnectionError, OSError, TimeoutError)


def store_errors() -> tuple[type[BaseException], ...]:
    """Every failure of a Redis call: connection failures and Redis's own refusals."""
    import redis.exceptions as rex

    return (*redis_errors(), rex.RedisError)


#: pauses before the retries of a call that is safe to repeat; the first retry gets a fresh
#: connection (redis-py reconnects the one that failed), the later ones ride out a short blip
RETRY_DELAYS = (0.05, 0.25, 1.0)

T = TypeVar("T")


async def retried(call: Callable[[], Awaitable[T]]) -> T:
    """`await call()`, again on a connection failure (see `RETRY_DELAYS`). Only for calls that are
    safe to repeat: reads, idempotent writes, and writes made safe by a token (the flush script's
    retry flag, a queued job's claim)."""
    for delay in RETRY_DELAYS:
        try:
            return await call()
        except redis_errors():
            await asyncio.sleep(delay)
    return await call()


class Retrying:
    """The client's commands, each `retried`: for commands that are safe to repeat only."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._redis, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await retried(lambda: fn(*args, **kwargs))

        return call


@contextlib.asynccontextmanager
async def naming_redis(redis: Redis) -> AsyncIterator[None]:
    """Re-raise every Redis failure as `RedisUnavailableError` naming the server."""
    try:
        yield
    except RedisUnavailableError:
        raise
    except store_errors() as exc:
        raise unavailable(redis, exc) from exc
