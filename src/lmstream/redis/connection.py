"""Connecting to Redis, and turning redis-py's failures into one error that names the server.

`connect()` gives a client with bounded timeouts, so a dead Redis is an error, never a hang.
Failures of commands that are safe to repeat (reads, the reaper, lease checks) are retried on a
fresh connection (`Retrying`): after a Redis restart every pooled connection is stale, and the
first request after it must not fail where a new connection would serve it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
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
