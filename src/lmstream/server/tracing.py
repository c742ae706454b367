"""The caller's trace context (W3C `traceparent`) for every request the server runs.

A pure ASGI middleware: with tracing on (`lmstream.otel`), a request (HTTP, or a WebSocket
handshake) that carries a `traceparent` header runs, body streaming included, under that remote
parent, so the answer's spans (`lmstream.stream`, `chat ...`, `execute_tool ...`) join the
browser's trace. Without tracing, or without the header, it passes the request through untouched.
"""

from __future__ import annotations

from typing import Any

from .._observe import current, remote_parent

__all__ = ["TraceContextMiddleware"]

_TRACE_HEADERS = (b"traceparent", b"tracestate", b"baggage")


class TraceContextMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" or current() is None:  # a WebSocket joins the caller's trace too
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS}
        if "traceparent" not in headers:
            await self.app(scope, receive, send)
            return
        with remote_parent(headers):
            await self.app(scope, receive, send)
