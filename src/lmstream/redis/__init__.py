"""Resumable streams across processes on Redis Streams (`pip install 'lmstream[redis]'`).

- `RedisEventHandler`: a chat's request events -> one Redis stream, text deltas batched.
- `RedisStreamReader`: replay/resume from any position, exactly once; `StreamGoneError` on a gap.
- `ChatRunner`: run requests with their events in Redis, stoppable from any process.
- `RedisQueue` / `Worker`: web nodes enqueue, workers run (consumer group, leases).
- `RedisChatRegistry`: the chat registry of `lmstream serve --redis` (stop and resume on any node).

redis-py is imported only when these are used: `import lmstream` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._common import Keys, StreamItem, connect
    from .control import ChatRunner, request_stop
    from .queue import RedisQueue, Worker
    from .reader import RedisStreamReader, reap
    from .transport import RedisEventHandler
    from .web import RedisChatRegistry

__all__ = [
    "ChatRunner",
    "Keys",
    "RedisChatRegistry",
    "RedisEventHandler",
    "RedisQueue",
    "RedisStreamReader",
    "StreamItem",
    "Worker",
    "connect",
    "reap",
    "request_stop",
]

_WHERE = {
    "Keys": "_common",
    "StreamItem": "_common",
    "connect": "_common",
    "ChatRunner": "control",
    "request_stop": "control",
    "RedisQueue": "queue",
    "Worker": "queue",
    "RedisStreamReader": "reader",
    "reap": "reader",
    "RedisEventHandler": "transport",
    "RedisChatRegistry": "web",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'lmstream.redis' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
