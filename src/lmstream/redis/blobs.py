"""Chat files in Redis: one key per file, `{prefix}:blob:{sha256}`, with the chats' TTL.

A file is stored once however many turns, resumes, regenerations and queued jobs name it (they
carry `/api/files/<sha256>`, `lmstream.protocols.files`); each use renews its TTL, so it lives
as long as a chat that uses it.
"""

from __future__ import annotations

from typing import Any

from .keys import DEFAULT_PREFIX

__all__ = ["RedisBlobStore"]


class RedisBlobStore:
    """`BlobStore` on Redis (any node and any worker reads what one node stored)."""

    def __init__(self, redis: Any, prefix: str = DEFAULT_PREFIX, ttl: float = 3600.0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = max(1, int(ttl))

    def key(self, digest: str) -> str:
        return f"{self.prefix}:blob:{digest}"

    async def put(self, digest: str, data: bytes) -> None:
        # SET NX: a file already there is not written again, only kept longer
        if not await self.redis.set(self.key(digest), data, ex=self.ttl, nx=True):
            await self.redis.expire(self.key(digest), self.ttl)

    async def get(self, digest: str) -> bytes | None:
        key = self.key(digest)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.expire(key, self.ttl)
        data, _ = await pipe.execute()
        if data is None:
            return None
        return data if isinstance(data, bytes) else str(data).encode("latin-1")
