"""`create_app(processor)`: the Starlette app serving one `LMRequestProcessor` over HTTP.

Routes: `POST /api/chat` (Vercel AI SDK UI message stream v1), `POST /v1/stream` (lmstream's
own SSE), `POST /api/chat/{id}/stop`, `GET /api/chat/{id}/stream` (resume), `GET /healthz`,
`GET /` (the chat page). Every request is checked before anything reaches the model, and a
concurrency slot, once taken, is given back on every path (one `try/finally` where it is taken).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..chat_registry import Answer, ChatRegistry, DetachedChatRegistry, InlineChatRegistry
from ..errors import LMStreamError, StreamGoneError
from ..events import EventEmitter
from ..processor import LMRequestProcessor
from ..retry import RetryConfig
from .answers import event_frames, live_ui_frames, replay_ui_frames
from .bodies import read_json
from .checks import LOOPBACK_HOSTS, RequestChecks
from .errors import BadRequest, public_error_text
from .guard import AuthMiddleware, Guard, Slot, error_response
from .page import page
from .policy import ClientPolicy
from .registry import InMemoryChatRegistry
from .relay import SSEResponse
from .requests import ChatRequest, PromptSlot, parse_chat, parse_stream
from .running import RunningRequest, start_request
from .tracing import TraceContextMiddleware

__all__ = ["create_app"]

logger = logging.getLogger("lmstream.server")

UI_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


def _unavailable(exc: Exception) -> Response:
    """503 when the registry's store refuses (Redis down, out of memory): the client may retry."""
    logger.warning("lmstream: the chat registry failed: %s", public_error_text(exc))
    return error_response(503, public_error_text(str(exc)), "service_unavailable", {"retry-after": "1"})


class _Server:
    """State shared by the routes: the processor, the registry, the running requests."""

    def __init__(
        self,
        processor: LMRequestProcessor[Any],
        registry: ChatRegistry,
        guard: Guard,
        heartbeat: float,
        policy: ClientPolicy,
        read_timeout: float | None,
    ) -> None:
        self.processor = processor
        self.registry = registry
        self.guard = guard
        self.heartbeat = heartbeat
        self.policy = policy
        self.read_timeout = read_timeout
        self.slot = PromptSlot.of(processor.prompt_builder)
        self.running: set[RunningRequest] = set()

    def _start(self, slot: Slot, run: RunningRequest) -> None:
        slot.share()  # the response holds the slot until it ends
        self.running.add(run)

    def _finish(self, slot: Slot, run: RunningRequest) -> None:
        run.cancel()  # a no-op when it already ended
        self.running.discard(run)
        slot.release()

    # ------------------------------------------------------------------ routes
    async def chat(self, request: Request) -> Response | SSEResponse:
        try:
            body = await read_json(request, self.guard.max_body_bytes, self.read_timeout)
            req = parse_chat(body, self.guard.max_messages, self.policy)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        slot = self.guard.acquire()
        if slot is None:
            return self.guard.busy()
        try:
            if isinstance(self.registry, DetachedChatRegistry):
                return await self._chat_detached(self.registry, req, body, slot)
            return self._chat_inline(req, slot)
        except Exception as exc:  # the registry's store refused (Redis down, OOM, ...)
            return _unavailable(exc)
        finally:
            slot.release()  # the route's own hold; what outlives it took its share

    def _chat_inline(self, req: ChatRequest, slot: Slot) -> SSEResponse:
        """Run the answer inside this response; the client leaving cancels it."""
        registry = self.registry
        assert isinstance(registry, InlineChatRegistry)
        run = start_request(
            self.processor,
            history=req.history,
            hyperparameters=req.hyperparameters,
            **self.slot.kwargs(req.text, req.attachments),
        )
        self._start(slot, run)
        return SSEResponse(
            self._inline_frames(registry, run, req.chat_id),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            headers=UI_HEADERS,
            on_end=lambda: self._finish(slot, run),
        )

    @staticmethod
    async def _inline_frames(registry: InlineChatRegistry, run: RunningRequest, chat_id: str) -> AsyncIterator[bytes]:
        """Registered when the response starts, so a response that never starts leaves no entry."""
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            run.cancel()

        log = await registry.open(chat_id, stop)
        async for frame in live_ui_frames(run, log, lambda: stopped):
            yield frame

    async def _chat_detached(
        self, registry: DetachedChatRegistry, req: ChatRequest, body: Any, slot: Slot
    ) -> Response | SSEResponse:
        """Start the answer detached (this process or a worker) and follow it like a resume; the
        client leaving does not cancel it (it may come back), only stop does. An answer running in
        this process keeps its slot until it ends, however early its response ends."""
        kwargs: dict[str, Any] = {
            "history": req.history,
            "hyperparameters": req.hyperparameters,
            **self.slot.kwargs(req.text, req.attachments),
        }
        processor = self.processor

        def run(emitter: EventEmitter) -> Any:
            return processor.process(event_emitter=emitter, **kwargs)

        job = {k: v for k, v in body.items() if k != "hyperparameters"}
        if req.hyperparameters:
            job["hyperparameters"] = req.hyperparameters  # what the policy let through, nothing more
        running = await registry.launch(req.chat_id, Answer(run=run, job=job))
        if running is not None:
            slot.share()
            running.add_done_callback(lambda _: slot.release())
        items = await registry.resume(req.chat_id)
        if items is None:  # pragma: no cover - launch claims the chat first
            return error_response(503, "the answer could not be started", "service_unavailable")
        slot.share()
        return SSEResponse(
            replay_ui_frames(items),
            on_disconnect=lambda: None,
            heartbeat=self.heartbeat,
            headers=UI_HEADERS,
            on_end=slot.release,
        )

    async def stream(self, request: Request) -> Response | SSEResponse:
        try:
            body = await read_json(request, self.guard.max_body_bytes, self.read_timeout)
            req = parse_stream(body, self.slot, self.guard.max_messages, self.policy)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        slot = self.guard.acquire()
        if slot is None:
            return self.guard.busy()
        try:
            run = start_request(
                self.processor,
                prompt_kwargs=req.prompt_kwargs,
                extra_contents=req.extra_contents,
                history=req.history,
                hyperparameters=req.hyperparameters,
            )
            self._start(slot, run)
            return SSEResponse(
                event_frames(run),
                on_disconnect=run.cancel,
                heartbeat=self.heartbeat,
                on_end=lambda: self._finish(slot, run),
            )
        finally:
            slot.release()

    async def stop(self, request: Request) -> Response:
        try:
            stopped = await self.registry.stop(request.path_params["chat_id"])
        except LMStreamError as exc:  # Redis down
            return _unavailable(exc)
        return JSONResponse({"stopped": stopped})

    async def resume(self, request: Request) -> Response | SSEResponse:
        after = request.headers.get("last-event-id")
        try:
            items = await self.registry.resume(request.path_params["chat_id"], after)
        except StreamGoneError as exc:  # Last-Event-ID is not (or no longer) a position of the answer
            return error_response(410, str(exc), "stream_gone")
        except LMStreamError as exc:  # Redis down
            return _unavailable(exc)
        if items is None:
            return Response(status_code=204)
        return SSEResponse(
            replay_ui_frames(items, after), on_disconnect=lambda: None, heartbeat=self.heartbeat, headers=UI_HEADERS
        )

    async def healthz(self, request: Request) -> Response:
        try:
            answers = await self.registry.running()
        except LMStreamError as exc:
            return _unavailable(exc)
        return JSONResponse(
            {
                "status": "ok",
                "streams": self.guard.active,
                "max_concurrent": self.guard.max_concurrent,
                "running": len(self.running),
                "answers": answers,
            }
        )


def _default_idle_timeout(processor: LMRequestProcessor[Any], idle_timeout: float | None) -> None:
    """Give the processor's invoker an idle timeout when it has none: a stalled upstream then
    ends its answer with an error (and frees its slot) instead of holding it forever."""
    invoker = processor.lm_invoker
    config = getattr(invoker, "retry_config", None)
    if idle_timeout is not None and isinstance(config, RetryConfig) and config.idle_timeout is None:
        invoker.retry_config = dataclasses.replace(config, idle_timeout=idle_timeout)


def create_app(
    processor: LMRequestProcessor[Any],
    *,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
    heartbeat: float = 15.0,
    max_body_bytes: int = 1_048_576,
    max_concurrent: int = 256,
    max_messages: int = 500,
    registry: ChatRegistry | None = None,
    allowed_hosts: Sequence[str] = (),
    max_tokens: int | None = None,
    read_timeout: float | None = 10.0,
    idle_timeout: float | None = 60.0,
) -> Starlette:
    """An ASGI app serving `processor`.

    `api_key` requires `Authorization: Bearer <key>` on every route but `/healthz` and the page;
    `registry` replaces the in-memory chat registry (stop and resume across processes);
    `allowed_hosts` are the Host names served besides the loopback ones ("*": any);
    `cors_origins` the other sites whose pages may call the API; `max_tokens` the most a client
    may ask for; `read_timeout` bounds the time to send a body (408); `idle_timeout` the upstream's
    silence before an answer fails, for a processor whose `RetryConfig` sets none."""
    if not isinstance(processor, LMRequestProcessor):
        raise TypeError("create_app needs an LMRequestProcessor, e.g. build_lm_request_processor('local/smollm2-135m')")
    guard = Guard(api_key, max_body_bytes, max_concurrent, max_messages)
    _default_idle_timeout(processor, idle_timeout)
    server = _Server(
        processor, registry or InMemoryChatRegistry(), guard, heartbeat, ClientPolicy(max_tokens), read_timeout
    )
    routes = [
        Route("/", page, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/api/chat", server.chat, methods=["POST"]),
        Route("/api/chat/{chat_id}/stop", server.stop, methods=["POST"]),
        Route("/api/chat/{chat_id}/stream", server.resume, methods=["GET"]),
        Route("/v1/stream", server.stream, methods=["POST"]),
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
                allow_headers=["authorization", "content-type", "last-event-id", "traceparent", "tracestate"],
            ),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await server.registry.start()  # e.g. subscribe to stops sent to other nodes
        yield
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
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed, 500: failed},
    )
    app.state.lmstream = server
    return app
