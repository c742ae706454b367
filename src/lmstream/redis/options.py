"""`RedisOptions`: how lmstream uses Redis, declared once for every piece that touches it.

The producer, reader, runner, queue, worker and chat registry all take one `options=`, so a
deployment that changes the prefix, the lease or the TTL changes it in one place, and no piece
can silently disagree with another about a key name or a timing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .keys import DEFAULT_PREFIX, Keys

__all__ = ["DEFAULT_OPTIONS", "RedisOptions"]


@dataclass(frozen=True)
class RedisOptions:
    """Settings shared by the pieces of lmstream's Redis scale-out.

    - `prefix`, `hash_tag`: key names (see `Keys`); `hash_tag=True` for a Redis Cluster.
    - `ttl`: seconds a chat's stream is kept after its last write.
    - `maxlen`: entries kept per chat stream (``XADD MAXLEN ~``); None keeps every entry.
    - `lease`: seconds a silent producer (or worker) counts as dead.
    - `flush_interval`, `max_batch`: the producer's batching of text deltas.
    - `queue_timeout`: seconds a queued job may wait for a worker before its readers get an error.
    - `queue_maxlen`, `queue_max_age`: bounds of the job queue (entries, seconds): past them
      the oldest jobs are trimmed.
    - `queue_max_jobs`, `queue_max_bytes`: past either, a new job is refused (`QueueFullError`,
      HTTP 429) instead of queued: a client posting and leaving cannot fill Redis.
    """

    prefix: str = DEFAULT_PREFIX
    hash_tag: bool = False
    ttl: float = 3600.0
    maxlen: int | None = 10_000
    lease: float = 10.0
    flush_interval: float = 0.005
    max_batch: int = 64
    queue_timeout: float = 60.0
    queue_maxlen: int = 100_000
    queue_max_age: float = 3600.0
    queue_max_jobs: int = 1_000
    queue_max_bytes: int = 256 * 1024 * 1024

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix, self.hash_tag)

    def replace(self, **changes: Any) -> RedisOptions:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


DEFAULT_OPTIONS = RedisOptions()
