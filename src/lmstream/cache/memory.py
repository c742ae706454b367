"""The in-process store: least recently used entries go first once `max_bytes` would be passed."""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["MemoryStore"]

#: what one entry costs besides its bytes and its key: the bytes and key objects' headers, the
#: ordered dict's node and the (expiry, bytes) pair; measured with tracemalloc (tests/test_cache.py)
ENTRY_OVERHEAD = 320


class MemoryStore:
    """Entries as bytes, bounded by `max_bytes` (their bytes, keys and bookkeeping), each kept
    for at most `ttl` seconds."""

    name = "memory"

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError("max_bytes must be a positive int")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    @staticmethod
    def _size(key: str, data: bytes) -> int:
        return len(key) + len(data) + ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, data = item
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return data

    async def put(self, key: str, data: bytes, ttl: float) -> None:
        # a copy of exactly its length: an encoder's buffer may hold several times the bytes it shows
        data = bytes(memoryview(data))
        size = self._size(key, data)
        if size > self.max_bytes:
            return  # larger than the whole store: not kept
        if key in self._entries:
            self._drop(key)
        entries = self._entries
        while entries and self.bytes + size > self.max_bytes:
            self._drop(next(iter(entries)))
        entries[key] = (time.monotonic() + ttl, data)
        self.bytes += size

    def _drop(self, key: str) -> None:
        _, data = self._entries.pop(key)
        self.bytes -= self._size(key, data)

    async def held(self) -> tuple[int | None, int | None]:
        """(bytes, entries) held now."""
        return self.bytes, len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    async def aclose(self) -> None:
        pass
