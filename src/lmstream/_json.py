"""One JSON codec for the whole package: orjson when installed, else the standard library."""

from __future__ import annotations

import json as _std
from typing import Any

try:  # orjson is a hard dependency, but stay importable without it
    import orjson as _orjson

    loads: Any = _orjson.loads
    JSONDecodeError: type[ValueError] = _orjson.JSONDecodeError

    def dumps(obj: Any) -> str:
        """Serialise to a str, falling back to `str()` for unknown objects."""
        return _orjson.dumps(obj, default=str).decode()

    def dumpb(obj: Any) -> bytes:
        return _orjson.dumps(obj, default=str)

except ImportError:  # pragma: no cover - exercised only without orjson
    loads = _std.loads
    JSONDecodeError = _std.JSONDecodeError

    def dumps(obj: Any) -> str:
        return _std.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"))

    def dumpb(obj: Any) -> bytes:
        return dumps(obj).encode()
