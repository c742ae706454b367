"""Serve a processor over HTTP: `create_app(processor)` and `lmstream serve` (extra `[server]`).

Imported lazily: `import lmstream` never imports Starlette. What goes on the wire (the UI
message stream, request bodies, SSE framing) is `lmstream.protocols`, which needs no web framework.

Modules: `app` (`create_app`: routes, middlewares, lifespan), `handlers` (`ChatServer`: what
each route does), `openai_api` (the OpenAI-compatible routes), `answers` (an answer's events ->
response bytes), `running` (one request running for one response), `relay` (`SSEResponse`:
disconnects and heartbeats), `guard` (the key, concurrency slots), `checks` (Host, Origin,
content type), `tracing` (the caller's `traceparent`), `bodies` (bounded body reading),
`registry` (`InMemoryChatRegistry`), `page` and `assets` (the chat page and its files),
`mcp_tools` (`--mcp`: MCP servers' tools for the app's lifetime), `serving` (uvicorn with
bounds), `cli` (`lmstream serve`).
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
