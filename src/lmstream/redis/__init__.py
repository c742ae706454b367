"""Resumable streams across processes on Redis Streams (`pip install 'lmstream[redis]'`).

- `RedisEventHandler`: a chat's request events -> one Redis stream, text deltas batched.
- `RedisStreamReader`: replay/resume from any position, exactly once; `StreamGoneError` on a gap.
- `ChatRunner`: run requests with their events in Redis, stoppable from any process.
- `RedisQueue` / `Worker`: web nodes enqueue, workers run (consumer group, leases).
- `RedisChatRegistry`: the server's chat registry on Redis (any node resumes or stops any chat).
- `RedisOptions`: prefix, TTL, lease, bounds: one object every piece above takes as `options=`.

redis-py is imported only when these are used: `import lmstream` stays light.

Modules: `keys` (key and channel names), `options` (`RedisOptions`), `connection` (connect;
redis-py's failures as one error), `codec` (events in a stream entry, positions), `scripts`
(the Lua scripts), `producer` (`RedisEventHandler`), `pipeline` (every chat's flushes in one
round trip), `reader` (`RedisStreamReader`) and `hub` (one connection for every live read),
`runner` (`ChatRunner`, stop), `queue` (`RedisQueue`, `Worker`), `registry`
(`RedisChatRegistry`), `approvals` (pending tool approvals any node can take), `blobs` (the chats' files, by
SHA-256, for every node), `cli`
(`lmstream worker`, whose `chat_jobs` runs queued chats through `lmstream.protocols.chat`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blobs import RedisBlobStore
    from .codec import StreamItem
    from .connection import connect
    from .keys import Keys
    from .options import RedisOptions
    from .producer import RedisEventHandler
    from .queue import RedisQueue, Worker
    from .reader import RedisStreamReader, reap
    from .registry import RedisChatRegistry
    from .runner import ChatRunner, request_stop

__all__ = [
    "ChatRunner",
    "Keys",
    "RedisBlobStore",
    "RedisChatRegistry",
    "RedisEventHandler",
    "RedisQueue",
    "RedisOptions",
    "RedisStreamReader",
    "StreamItem",
    "Worker",
    "connect",
    "reap",
    "request_stop",
]

_WHERE = {
    "Keys": "keys",
    "StreamItem": "codec",
    "connect": "connection",
    "RedisOptions": "options",
    "ChatRunner": "runner",
    "request_stop": "runner",
    "RedisQueue": "queue",
    "Worker": "queue",
    "RedisStreamReader": "reader",
    "reap": "reader",
    "RedisEventHandler": "producer",
    "RedisChatRegistry": "registry",
    "RedisBlobStore": "blobs",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmstream.redis' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
