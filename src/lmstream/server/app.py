"""`create_app(processor)`: the Starlette app serving one `LMRequestProcessor` over HTTP.

Routes: `POST /api/chat` (Vercel AI SDK UI message stream v1), `POST /v1/stream` (lmstream's
own SSE), `POST /api/chat/{id}/stop`, `GET /api/chat/{id}/stream` (resume), `GET /healthz`,
`GET /` (the chat page), `GET /static/...` (its script, styles and vendored markdown library),
`POST /v1/stream/{request_id}/approve`, and the OpenAI-compatible `POST /v1/chat/completions`,
`POST /v1/responses`, `GET /v1/models` (`openai_api`). Every request passes the
checks (Host, Origin, content type, key) before a handler (`handlers.ChatServer`) sees it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..chat_registry import ChatRegistry
from ..processor import LMRequestProcessor
from ..protocols.errors import public_error_text
from ..protocols.files import BlobStore, FileIntake, FileLimits, MemoryBlobStore
from ..protocols.policy import ClientPolicy
from ..protocols.ui_approvals import ApprovalStore
from ..retry import RetryConfig
from .assets import static_file
from .checks import LOOPBACK_HOSTS, RequestChecks
from .guard import AuthMiddleware, Guard, error_response
from .handlers import ChatServer
from .openai_api import OpenAIRoutes
from .page import page
from .registry import InMemoryChatRegistry
from .tracing import TraceContextMiddleware

__all__ = ["create_app"]

logger = logging.getLogger("lmstream.server")

#: the headers the `openai` JavaScript SDK sends from a browser (its CORS preflight names them)
OPENAI_SDK_HEADERS = (
    "openai-organization",
    "openai-project",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
    "x-stainless-helper-method",
)


def _default_idle_timeout(processor: LMRequestProcessor[Any], idle_timeout: float | None) -> None:
    """Give the processor's invoker an idle timeout when it has none: a stalled upstream then
    ends its answer with an error (and frees its slot) instead of holding it forever."""
    pending: list[Any] = [processor.lm_invoker]
    while pending:  # a fallback chain's or a pool's members too: each streams on its own
        invoker = pending.pop()
        pending.extend(getattr(invoker, "members", ()))
        config = getattr(invoker, "retry_config", None)
        if idle_timeout is not None and isinstance(config, RetryConfig) and config.idle_timeout is None:
            invoker.retry_config = dataclasses.replace(config, idle_timeout=idle_timeout)


def create_app(
    processor: LMRequestProcessor[Any],
    *,
    api_key: str | Sequence[str] | None = None,
    cors_origins: Sequence[str] = (),
    heartbeat: float = 15.0,
    max_body_bytes: int = 1_048_576,
    max_concurrent: int = 256,
    max_messages: int = 500,
    registry: ChatRegistry | None = None,
    approvals: ApprovalStore | None = None,
    approval_ttl: float = 600.0,
    allowed_hosts: Sequence[str] = (),
    max_tokens: int | None = None,
    read_timeout: float | None = 10.0,
    idle_timeout: float | None = 60.0,
    served_model_names: Sequence[str] = (),
    allow_client_tools: bool = False,
    file_limits: FileLimits | None = None,
    blobs: BlobStore | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    write_timeout: float | None = 30.0,
) -> Starlette:
    """An ASGI app serving `processor`.

    `api_key` requires `Authorization: Bearer <key>` on every route but `/healthz` and the page
    (several keys: each is a tenant, whose answers the processor's response cache keeps apart);
    `registry` replaces the in-memory chat registry (stop and resume across processes);
    `allowed_hosts` are the Host names served besides the loopback ones ("*": any);
    `cors_origins` the other sites whose pages may call the API; `max_tokens` the most a client
    may ask for; `read_timeout` bounds the time to send a body (408); `idle_timeout` the upstream's
    silence before an answer fails, for a processor whose `RetryConfig` sets none;
    `served_model_names` the names OpenAI clients may put in `model` (default: the invoker's model
    id); `allow_client_tools` lets them send `tools` (else 400 naming `--allow-client-tools`);
    `file_limits` bounds clients' files (413/415 past them) and `blobs` keeps each file once,
    by hash (default: in memory; `lmstream.redis.RedisBlobStore` beside a Redis registry);
    `lifespan` runs for the app's lifetime, inside the server's own (MCP connections, say);
    `write_timeout` bounds one write to a client: one that stops reading is cut off, its slot freed."""
    if not isinstance(processor, LMRequestProcessor):
        raise TypeError("create_app needs an LMRequestProcessor, e.g. build_lm_request_processor('local/smollm2-135m')")
    guard = Guard(api_key, max_body_bytes, max_concurrent, max_messages)
    _default_idle_timeout(processor, idle_timeout)
    server = ChatServer(
        processor,
        registry if registry is not None else InMemoryChatRegistry(),
        guard,
        heartbeat,
        ClientPolicy(max_tokens),
        read_timeout,
        approvals,
        approval_ttl,
        write_timeout,
        FileIntake(blobs if blobs is not None else MemoryBlobStore(), file_limits),
    )
    openai = OpenAIRoutes(server, served_model_names or [processor.lm_invoker.model_id], allow_client_tools)
    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{path:path}", static_file, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/api/chat", server.chat, methods=["POST"]),
        Route("/api/files", server.file_limits, methods=["GET"]),
        Route("/api/files/{digest}", server.file, methods=["GET"]),
        Route("/api/chat/{chat_id}/stop", server.stop, methods=["POST"]),
        Route("/api/chat/{chat_id}/stream", server.resume, methods=["GET"]),
        Route("/v1/stream", server.stream, methods=["POST"]),
        Route("/v1/stream/{request_id}/approve", server.approve, methods=["POST"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/responses", openai.responses, methods=["POST"]),
        Route("/v1/models", openai.models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai.model, methods=["GET"]),
    ]
    # TraceContextMiddleware: a `traceparent` header makes the answer's spans join the caller's trace
    hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
    middleware = [
        Middleware(RequestChecks, allowed_hosts=hosts, cors_origins=cors_origins),
        Middleware(TraceContextMiddleware),
        Middleware(AuthMiddleware, guard=guard),
    ]
    if cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "last-event-id",
                    "traceparent",
                    "tracestate",
                    *OPENAI_SDK_HEADERS,
                ],
            ),
        )

    @contextlib.asynccontextmanager
    async def lifetime(app: Starlette) -> AsyncIterator[None]:
        await server.registry.start()  # e.g. subscribe to stops sent to other nodes
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            for run in list(server.running):
                run.cancel()
            await server.registry.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route {request.method} {request.url.path}", "not_found_error")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}", "invalid_request_error")

    async def failed(request: Request, exc: Exception) -> Response:
        logger.error("lmstream: %s %s failed: %s", request.method, request.url.path, public_error_text(exc))
        return error_response(500, f"the server failed ({type(exc).__name__})", "server_error")

    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifetime,
        exception_handlers={404: not_found, 405: not_allowed, 500: failed},
    )
    app.state.lmstream = server
    app.state.openai = openai
    return app
