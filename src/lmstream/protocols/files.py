"""Files in chat bodies: checked against the operator's limits, kept once, referenced by hash.

A browser sends a new file as a base64 `data:` URL in a UI `file` part. `FileIntake.intake`
decodes it, checks it (size per file, total per request, count, and a type allow-list read from
the bytes: 413/415 naming the limit or the type), stores it in a `BlobStore` under its SHA-256,
and rewrites the part's `url` to `/api/files/<sha256>`. Every later turn, a resume, a regenerate
and a queued worker carry that reference instead of the bytes; `resolve` turns references back
into bytes where the model is called. Pure: no web framework, no Redis (that store lives in
`lmstream.redis.blobs`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import _mime
from ..errors import AttachmentError
from ..types import Attachment
from .errors import BadRequest

__all__ = [
    "FILE_URL_PREFIX",
    "BlobStore",
    "FileIntake",
    "FileLimits",
    "MemoryBlobStore",
    "blob_refs",
    "check_attachments",
    "ref_of",
]

#: where a stored file is named (and served from, for the page's thumbnails)
FILE_URL_PREFIX = "/api/files/"
_HASH = re.compile(r"^[0-9a-f]{64}$")


class BlobStore(Protocol):
    """Files by SHA-256: `put` keeps one copy (a second put of the same bytes refreshes it)."""

    async def put(self, digest: str, data: bytes) -> None: ...

    async def get(self, digest: str) -> bytes | None: ...


class MemoryBlobStore:
    """In this process, bounded in bytes (oldest first out) and in age (`ttl` seconds)."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, ttl: float = 3600.0) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    async def put(self, digest: str, data: bytes) -> None:
        old = self._items.pop(digest, None)
        if old is not None:
            self._bytes -= len(old[0])
        self._items[digest] = (data, time.monotonic() + self.ttl)
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, (gone, _) = self._items.popitem(last=False)
            self._bytes -= len(gone)

    async def get(self, digest: str) -> bytes | None:
        item = self._items.get(digest)
        if item is None:
            return None
        if item[1] < time.monotonic():
            del self._items[digest]
            self._bytes -= len(item[0])
            return None
        self._items[digest] = (item[0], time.monotonic() + self.ttl)  # in use: kept as long as the chat
        self._items.move_to_end(digest)
        return item[0]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class FileLimits:
    """The operator's bounds on files a client sends (`lmstream serve --max-file-bytes` ...)."""

    max_file_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 25 * 1024 * 1024
    max_files: int = 10
    types: tuple[str, ...] = field(default=_mime.SUPPORTED)

    def describe(self) -> dict[str, Any]:
        """What the page shows before an upload."""
        return {
            "max_file_bytes": self.max_file_bytes,
            "max_request_bytes": self.max_request_bytes,
            "max_files": self.max_files,
            "types": list(self.types),
        }


def ref_of(url: str) -> str | None:
    """The hash a `/api/files/<sha256>` URL names, else None."""
    if not url.startswith(FILE_URL_PREFIX):
        return None
    digest = url[len(FILE_URL_PREFIX) :]
    return digest if _HASH.match(digest) else None


def _file_parts(body: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return
    for i, m in enumerate(messages):
        parts = m.get("parts") if isinstance(m, dict) else None
        if not isinstance(parts, list):
            continue
        for j, p in enumerate(parts):
            if isinstance(p, dict) and p.get("type") == "file" and isinstance(p.get("url"), str):
                yield f"messages[{i}].parts[{j}]", p


def blob_refs(body: Any) -> list[str]:
    """Every stored file a chat body references (what a worker fetches before parsing it)."""
    return list(dict.fromkeys(d for _, p in _file_parts(body) if (d := ref_of(p["url"])) is not None))


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MiB" if n >= 1_048_576 else f"{n} bytes"


class FileIntake:
    """Applies `limits` to a chat body's new files and keeps them in `store`."""

    def __init__(self, store: BlobStore, limits: FileLimits | None = None) -> None:
        self.store = store
        self.limits = limits or FileLimits()

    async def intake(self, body: Any) -> dict[str, bytes]:
        """Check and store the body's `data:` file parts, rewriting each to its reference (in
        place); fetch every referenced file. Returns hash -> bytes for `parse_chat`.
        Raises `BadRequest`: 413 over a limit, 415 a type not allowed, 410 a reference whose
        file is gone."""
        lim = self.limits
        new: list[tuple[str, dict[str, Any], bytes]] = []
        total = 0
        for where, p in _file_parts(body):
            url: str = p["url"]
            if not url.startswith("data:"):
                continue
            head, _, payload = url[5:].partition(",")
            if not head.endswith(";base64"):
                raise BadRequest(f"{where}.url", "data: URLs must be base64")
            over = f"file over the limit of {_mb(lim.max_file_bytes)} per file (--max-file-bytes)"
            if len(payload) * 3 // 4 > lim.max_file_bytes + 2:  # before decoding: no oversized buffer
                raise BadRequest(where, over, 413)
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{where}.url", "invalid base64") from None
            if len(data) > lim.max_file_bytes:
                raise BadRequest(where, over, 413)
            total += len(data)
            new.append((where, p, data))
        if len(new) > lim.max_files:
            raise BadRequest(
                "messages", f"{len(new)} files in one request; at most {lim.max_files} (--max-files)", 413
            )
        if total > lim.max_request_bytes:
            raise BadRequest(
                "messages",
                f"files total {_mb(total)}; at most {_mb(lim.max_request_bytes)} per request "
                "(--max-request-file-bytes)",
                413,
            )
        found: dict[str, bytes] = {}
        for where, p, data in new:
            label = p.get("mediaType")
            name = p.get("filename")
            try:
                a = Attachment(data, label if isinstance(label, str) else "", name if isinstance(name, str) else None)
            except AttachmentError as exc:
                raise BadRequest(where, str(exc), 415) from None
            if a.mime_type not in lim.types:
                raise BadRequest(
                    where, f"files of type {a.mime_type} are not accepted here (allowed: {', '.join(lim.types)})", 415
                )
            digest = hashlib.sha256(data).hexdigest()
            await self.store.put(digest, data)
            found[digest] = data
            p["url"] = FILE_URL_PREFIX + digest
            p["mediaType"] = a.mime_type
        for where, p in _file_parts(body):
            ref = ref_of(p["url"])
            if ref is None or ref in found:
                continue
            digest = ref
            data_ = await self.store.get(digest)
            if data_ is None:
                raise BadRequest(
                    f"{where}.url",
                    "this file is no longer kept by the server (it keeps files as long as a chat); attach it again",
                    410,
                )
            found[digest] = data_
        return found


def check_attachments(files: Sequence[Attachment], limits: FileLimits, where: str = "messages") -> None:
    """The same limits for a request that carries its files as bytes in every turn (the
    OpenAI-compatible routes): every file counts. Raises `BadRequest` 413/415."""
    over = [a for a in files if len(a.data) > limits.max_file_bytes]
    if over:
        raise BadRequest(where, f"file over the limit of {_mb(limits.max_file_bytes)} per file (--max-file-bytes)", 413)
    if len(files) > limits.max_files:
        raise BadRequest(where, f"{len(files)} files in one request; at most {limits.max_files} (--max-files)", 413)
    total = sum(len(a.data) for a in files)
    if total > limits.max_request_bytes:
        raise BadRequest(
            where,
            f"files total {_mb(total)}; at most {_mb(limits.max_request_bytes)} per request "
            "(--max-request-file-bytes)",
            413,
        )
    for a in files:
        if a.mime_type not in limits.types:
            allowed = ", ".join(limits.types)
            raise BadRequest(where, f"files of type {a.mime_type} are not accepted here (allowed: {allowed})", 415)


async def fetch_blobs(store: BlobStore, refs: Sequence[str]) -> dict[str, bytes]:
    """The stored files `refs` name (those gone are left out: parsing then says which)."""
    out: dict[str, bytes] = {}
    for digest in refs:
        data = await store.get(digest)
        if data is not None:
            out[digest] = data
    return out


def attachment_for(
    url: str, label: str | None, filename: str | None, blobs: Mapping[str, bytes] | None
) -> Attachment | None:
    """A referenced file as an `Attachment` (None: not a reference, or not fetched)."""
    digest = ref_of(url)
    if digest is None or blobs is None or digest not in blobs:
        return None
    return Attachment(blobs[digest], label or "", filename)
