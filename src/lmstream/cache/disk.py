"""A directory of entries: answers that outlive the process (a batch run again tomorrow).

One file per entry, named by the request's digest, written whole then renamed into place (a
reader never sees half of one); the first line is the expiry time. Expired files are removed
when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

__all__ = ["DirectoryStore", "default_directory"]


def default_directory() -> Path:
    """`$XDG_CACHE_HOME/lmstream/responses` (else `~/.cache/lmstream/responses`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmstream" / "responses"


class DirectoryStore:
    """Entries as files under `path` (created when missing)."""

    name = "directory"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.path)!r})"

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / key

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> bytes | None:
        f = self._file(key)
        try:
            raw = f.read_bytes()
        except OSError:
            return None
        head, _, data = raw.partition(b"\n")
        try:
            expires = float(head)
        except ValueError:
            return None
        if expires <= time.time():
            with contextlib.suppress(OSError):
                f.unlink()
            return None
        return data

    async def put(self, key: str, data: bytes, ttl: float) -> None:
        await asyncio.to_thread(self._put, key, data, ttl)

    def _put(self, key: str, data: bytes, ttl: float) -> None:
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
        tmp.write_bytes(b"%.3f\n" % (time.time() + ttl) + data)
        os.replace(tmp, f)

    async def held(self) -> tuple[int | None, int | None]:
        return await asyncio.to_thread(self._held)

    def _held(self) -> tuple[int | None, int | None]:
        size = count = 0
        for f in self.path.glob("??/*"):
            with contextlib.suppress(OSError):
                size += f.stat().st_size
                count += 1
        return size, count

    async def aclose(self) -> None:
        pass
