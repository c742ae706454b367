"""`create_app(processor)`: the Starlette app serving one `LMRequestProcessor` over HTTP.

Routes: `POST /api/chat` (Vercel AI SDK UI message stream v1), `POST /v1/stream` (lmstream's
own SSE), `POST /api/chat/{id}/stop`, `GET /api/chat/{id}/stream` (resume), `GET /healthz`,
`GET /` (the chat page). Every request is checked before anything reaches the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .._json import dumpb
from ..errors import LMStreamError, StreamGoneError
from ..events import Event
from ..processor import LMRequestProcessor
from .guard import AuthMiddleware, Guard, error_response, read_json
from .registry import ChatRegistry, InMemoryChatRegistry
from .relay import SSEResponse
from .requests import BadRequest, PromptSlot, parse_chat, parse_stream
from .running import RunningRequest, start_request
from .tracing import TraceContextMiddleware
from .ui_stream import UIStreamMapper

__all__ = ["create_app"]

UI_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
#: what a running answer's stream says when the server stops under it (Ctrl-C, SIGTERM)
SHUTDOWN_MESSAGE = "the server is shutting down"
_DONE = b"data: [DONE]\n\n"


def _ui_frame(chunks: list[dict[str, Any]]) -> bytes:
    if len(chunks) == 1:
        return b"data: " + dumpb(chunks[0]) + b"\n\n"
    return b"".join(b"data: " + dumpb(c) + b"\n\n" for c in chunks)


def _event_frame(ev: Event) -> bytes:
    return f"id: {ev.id}\nevent: {ev.type}\ndata: ".encode() + ev.to_json().encode() + b"\n\n"


class _Server:
    """State shared by the routes: the processor, the registry, the running requests."""

    def __init__(
        self, processor: LMRequestProcessor[Any], registry: ChatRegistry, guard: Guard, heartbeat: float
    ) -> None:
        self.processor = processor
        self.registry = registry
        self.guard = guard
        self.heartbeat = heartbeat
        self.slot = PromptSlot.of(processor.prompt_builder)
        self.running: set[RunningRequest] = set()
        self.shutting_down = False

    def shut_down(self) -> None:
        """The server is stopping: every running answer ends now with an error saying so."""
        self.shutting_down = True
        for run in list(self.running):
            run.cancel()

    def _finish(self, run: RunningRequest) -> None:
        run.cancel()  # a no-op when it already ended
        self.running.discard(run)
        self.guard.release()

    # ------------------------------------------------------------------ routes
    async def chat(self, request: Request) -> Response | SSEResponse:
        try:
            body = await read_json(request, self.guard.max_body_bytes)
            req = parse_chat(body, self.guard.max_messages)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        if not self.guard.acquire():
            return self.guard.busy()
        launch = getattr(self.registry, "launch", None)
        if launch is not None:  # answers run outside this response (Redis): any node resumes them
            return await self._chat_elsewhere(launch, req, body)
        run = start_request(
            self.processor,
            history=req.history,
            hyperparameters=req.hyperparameters,
            **self.slot.kwargs(req.text, req.attachments),
        )
        self.running.add(run)
        return SSEResponse(
            self._chat_frames(run, req.chat_id),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            headers=UI_HEADERS,
            on_end=lambda: self._finish(run),
        )

    async def _chat_elsewhere(self, launch: Any, req: Any, body: Any) -> Response | SSEResponse:
        """Start the answer detached (this process or a worker) and follow it like a resume; the
        client leaving does not cancel it (it may come back), only stop does."""
        kwargs = {
            "history": req.history,
            "hyperparameters": req.hyperparameters,
            **self.slot.kwargs(req.text, req.attachments),
        }
        try:
            await launch(req.chat_id, self.processor, kwargs, body)
            frames = await self.registry.resume(req.chat_id)
        except LMStreamError as exc:
            self.guard.release()
            return error_response(503, str(exc), "service_unavailable")
        if frames is None:  # pragma: no cover - launch claims the chat first
            self.guard.release()
            return error_response(503, "the answer could not be started", "service_unavailable")
        return SSEResponse(
            frames, on_disconnect=lambda: None, heartbeat=self.heartbeat, headers=UI_HEADERS, on_end=self.guard.release
        )

    async def _chat_frames(self, run: RunningRequest, chat_id: str) -> AsyncIterator[bytes]:
        """The answer's frames, also written to the chat's log (for stop and resume). Registered
        here, when the response starts, so a response that never starts leaves no entry."""
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            run.cancel()

        log = await self.registry.open(chat_id, stop)
        mapper = UIStreamMapper()
        try:
            frame = _ui_frame([mapper.start()])
            log.write(frame)
            yield frame
            batch: list[bytes] = []  # frames of events that were already waiting: one write for all
            with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
                async for ev in run.events():
                    if ev.type == "error" and stopped:
                        chunks = mapper.stopped()
                    elif ev.type == "error" and self.shutting_down:
                        chunks = mapper.feed("error", SHUTDOWN_MESSAGE, ev.metadata)
                    else:
                        chunks = mapper.feed(ev.type, ev.value, ev.metadata)
                    if chunks:
                        frame = _ui_frame(chunks)
                        log.write(frame)
                        batch.append(frame)
                    if batch and not run.pending():
                        yield batch[0] if len(batch) == 1 else b"".join(batch)
                        batch.clear()
            if batch:
                yield b"".join(batch)
            if not mapper.closed:  # ended without done/error: it was cancelled
                end = mapper.feed("error", SHUTDOWN_MESSAGE, {}) if self.shutting_down else mapper.stopped()
                frame = _ui_frame(end)
                log.write(frame)
                yield frame
            log.write(_DONE)
            yield _DONE
        finally:
            run.cancel()
            await log.close()

    async def stream(self, request: Request) -> Response | SSEResponse:
        try:
            body = await read_json(request, self.guard.max_body_bytes)
            req = parse_stream(body, self.slot, self.guard.max_messages)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        if not self.guard.acquire():
            return self.guard.busy()
        run = start_request(
            self.processor,
            prompt_kwargs=req.prompt_kwargs,
            extra_contents=req.extra_contents,
            history=req.history,
            hyperparameters=req.hyperparameters,
        )
        self.running.add(run)
        return SSEResponse(
            self._event_frames(run),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            on_end=lambda: self._finish(run),
        )

    async def _event_frames(self, run: RunningRequest) -> AsyncIterator[bytes]:
        try:
            batch: list[bytes] = []
            with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
                async for ev in run.events():
                    if ev.type == "error" and self.shutting_down:
                        ev = Event(SHUTDOWN_MESSAGE, ev.type, ev.level, {**ev.metadata, "error_type": "ServerShutdown"})
                    batch.append(_event_frame(ev))
                    if not run.pending():
                        yield batch[0] if len(batch) == 1 else b"".join(batch)
                        batch.clear()
            if batch:
                yield b"".join(batch)
        finally:
            run.cancel()

    async def stop(self, request: Request) -> Response:
        try:
            stopped = await self.registry.stop(request.path_params["chat_id"])
        except LMStreamError as exc:  # Redis down
            return error_response(503, str(exc), "service_unavailable")
        return JSONResponse({"stopped": stopped})

    async def resume(self, request: Request) -> Response | SSEResponse:
        try:
            frames = await self.registry.resume(request.path_params["chat_id"], request.headers.get("last-event-id"))
        except StreamGoneError as exc:  # the Last-Event-ID position was trimmed or expired
            return error_response(410, str(exc), "stream_gone")
        except LMStreamError as exc:  # Redis down
            return error_response(503, str(exc), "service_unavailable")
        if frames is None:
            return Response(status_code=204)
        return SSEResponse(frames, on_disconnect=lambda: None, heartbeat=self.heartbeat, headers=UI_HEADERS)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "running": len(self.running)})

    async def page(self, request: Request) -> Response:
        html = resources.files("lmstream.server").joinpath("static/chat.html").read_text("utf-8")
        return HTMLResponse(html, headers={"cache-control": "no-cache"})


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
) -> Starlette:
    """An ASGI app serving `processor`. `api_key` requires `Authorization: Bearer <key>` on every
    route but `/healthz` and the page; `registry` replaces the in-memory chat registry (stop and
    resume across processes)."""
    if not isinstance(processor, LMRequestProcessor):
        raise TypeError("create_app needs an LMRequestProcessor, e.g. build_lm_request_processor('local/smollm2-135m')")
    guard = Guard(api_key, max_body_bytes, max_concurrent, max_messages)
    server = _Server(processor, registry or InMemoryChatRegistry(), guard, heartbeat)
    routes = [
        Route("/", server.page, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/api/chat", server.chat, methods=["POST"]),
        Route("/api/chat/{chat_id}/stop", server.stop, methods=["POST"]),
        Route("/api/chat/{chat_id}/stream", server.resume, methods=["GET"]),
        Route("/v1/stream", server.stream, methods=["POST"]),
    ]
    # TraceContextMiddleware: a `traceparent` header makes the answer's spans join the caller's trace
    middleware = [Middleware(TraceContextMiddleware), Middleware(AuthMiddleware, guard=guard)]
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
        start = getattr(server.registry, "start", None)
        if start is not None:
            await start()  # e.g. subscribe to stops sent to other nodes
        yield
        for run in list(server.running):
            run.cancel()
        await server.registry.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, f"no route {request.method} {request.url.path}", "not_found_error")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}", "invalid_request_error")

    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={404: not_found, 405: not_allowed}
    )
    app.state.lmstream = server
    return app
