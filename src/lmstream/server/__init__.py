"""Serve a processor over HTTP: `create_app(processor)` and `lmstream serve` (extra `[server]`).

Imported lazily: `import lmstream` never imports Starlette. What goes on the wire (the UI
message stream, request bodies, SSE framing) is `lmstream.protocols`, which needs no web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        try:
            from .app import create_app
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"lmstream.server needs the server extra: pip install 'lmstream[server]' ({exc})"
            ) from exc
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
