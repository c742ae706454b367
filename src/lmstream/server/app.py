"""`create_app(processor)`: the Starlette app serving one `LMRequestProcessor` over HTTP.

Routes: `POST /api/chat` (Vercel AI SDK UI message stream v1), `POST /v1/stream` (lmstream's
own SSE), `POST /api/chat/{id}/stop`, `GET /api/chat/{id}/stream` (resume), `GET /healthz`,
`GET /` (the chat page) and `GET /static/...` (its script, styles and vendored library).
Every request is checked before anything reaches the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._json import dumpb
from ..approval import ApprovalError, DeferredApproval, PendingStep, answer
from ..errors import ContextOverflowError, LMStreamError, StreamGoneError
from ..events import Event
from ..processor import LMRequestProcessor
from ..window import fit_history
from .approvals import ApprovalStore, InMemoryApprovalStore, PendingAnswer, parse_approval_answers, take_decisions
from .assets import page, static_file
from .guard import AuthMiddleware, Guard, error_response, read_json
from .registry import ChatRegistry, InMemoryChatRegistry
from .relay import SSEResponse
from .requests import BadRequest, PromptSlot, _hyper, parse_chat, parse_stream
from .running import RunningRequest, start_request
from .tracing import TraceContextMiddleware
from .ui_stream import UIStreamMapper, new_message_id

__all__ = ["create_app"]

UI_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
_DONE = b"data: [DONE]\n\n"


def _ui_frame(chunks: list[dict[str, Any]]) -> bytes:
    if len(chunks) == 1:
        return b"data: " + dumpb(chunks[0]) + b"\n\n"
    return b"".join(b"data: " + dumpb(c) + b"\n\n" for c in chunks)


def _context_frame(dropped: int) -> bytes:
    """A `data-context` part when older messages were left out to fit the model's window."""
    if not dropped:
        return b""
    return _ui_frame([{"type": "data-context", "id": "context", "data": {"dropped": dropped}}])


async def _after_first(frames: AsyncIterator[bytes], extra: bytes) -> AsyncIterator[bytes]:
    """`frames` with `extra` sent right after the first frame (the `start` chunk)."""
    first = True
    async for frame in frames:
        yield frame + extra if first and extra else frame
        first = False


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
        self.approvals: ApprovalStore = InMemoryApprovalStore()
        self.approval_ttl = 600.0

    def _finish(self, run: RunningRequest) -> None:
        run.cancel()  # a no-op when it already ended
        self.running.discard(run)
        self.guard.release()

    # ------------------------------------------------------------------ routes
    async def chat(self, request: Request) -> Response | SSEResponse:
        try:
            body = await read_json(request, self.guard.max_body_bytes)
            cont = parse_approval_answers(body)
            if cont is not None:  # the browser answered tool approvals: go on with that answer
                return await self._continue_chat(body, cont)
            req = parse_chat(body, self.guard.max_messages)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        prompt = self.slot.kwargs(req.text, req.attachments)
        launch = getattr(self.registry, "launch", None)
        notice = b""
        if getattr(self.registry, "queue", None) is None:  # queued chats are fitted by the worker
            try:  # the newest turns that fit the model's window, before a slot is taken
                fit = fit_history(self.processor, req.history, **prompt, hyperparameters=req.hyperparameters)
            except ContextOverflowError as exc:
                return error_response(400, str(exc), "context_length_exceeded")
            req.history = fit.history
            notice = _context_frame(fit.dropped)
        if not self.guard.acquire():
            return self.guard.busy()
        if launch is not None:  # answers run outside this response (Redis): any node resumes them
            return await self._chat_elsewhere(launch, req, body, notice)
        message_id = new_message_id()
        run = start_request(
            self.processor,
            history=req.history,
            hyperparameters=req.hyperparameters,
            deferred_approval=DeferredApproval(self._saver(req.chat_id, message_id)),
            **prompt,
        )
        return self._chat_response(run, req.chat_id, UIStreamMapper(message_id), notice)

    def _saver(self, chat_id: str, message_id: str) -> Any:
        async def save(step: PendingStep) -> None:
            await self.approvals.save(PendingAnswer(step, chat_id, message_id), self.approval_ttl)

        return save

    async def _continue_chat(self, body: Any, cont: Any) -> Response | SSEResponse:
        """Finish the saved tool step with the browser's decisions, streaming into the same
        assistant message (its open step, its tool parts), then the model's next step."""
        chat_id = body.get("id")
        if not isinstance(chat_id, str):
            raise BadRequest("id", "must be a string")
        if not self.guard.acquire():
            return self.guard.busy()
        try:
            pending, decisions = await take_decisions(self.approvals, chat_id, cont)
        except (ApprovalError, LMStreamError) as exc:
            self.guard.release()
            return error_response(getattr(exc, "status_code", 503), str(exc), "approval_error")
        step = pending.step
        resume = DeferredApproval(self._saver(chat_id, pending.message_id), resume=step, decisions=decisions)
        run = start_request(self.processor, deferred_approval=resume, hyperparameters=_hyper(body))
        mapper = UIStreamMapper(pending.message_id, step=step.step, announced=tuple(c.id for c in step.calls))
        return self._chat_response(run, chat_id, mapper)

    def _chat_response(
        self, run: RunningRequest, chat_id: str, mapper: UIStreamMapper, notice: bytes = b""
    ) -> SSEResponse:
        self.running.add(run)
        return SSEResponse(
            self._chat_frames(run, chat_id, mapper, notice),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            headers=UI_HEADERS,
            on_end=lambda: self._finish(run),
        )

    async def _chat_elsewhere(self, launch: Any, req: Any, body: Any, notice: bytes) -> Response | SSEResponse:
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
            _after_first(frames, notice),
            on_disconnect=lambda: None,
            heartbeat=self.heartbeat,
            headers=UI_HEADERS,
            on_end=self.guard.release,
        )

    async def _chat_frames(
        self, run: RunningRequest, chat_id: str, mapper: UIStreamMapper, notice: bytes = b""
    ) -> AsyncIterator[bytes]:
        """The answer's frames, also written to the chat's log (for stop and resume). Registered
        here, when the response starts, so a response that never starts leaves no entry."""
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            run.cancel()

        log = await self.registry.open(chat_id, stop)
        try:
            frame = _ui_frame([mapper.start()]) + notice
            log.write(frame)
            yield frame
            batch: list[bytes] = []  # frames of events that were already waiting: one write for all
            with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
                async for ev in run.events():
                    if ev.type == "error" and stopped:
                        chunks = mapper.stopped()
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
                frame = _ui_frame(mapper.stopped())
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
            approval_timeout=self.approval_ttl,  # answered through POST /v1/stream/{request_id}/approve
        )
        self.running.add(run)
        return SSEResponse(
            self._event_frames(run),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            on_end=lambda: self._finish(run),
        )

    @staticmethod
    async def _event_frames(run: RunningRequest) -> AsyncIterator[bytes]:
        try:
            batch: list[bytes] = []
            with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
                async for ev in run.events():
                    batch.append(_event_frame(ev))
                    if not run.pending():
                        yield batch[0] if len(batch) == 1 else b"".join(batch)
                        batch.clear()
            if batch:
                yield b"".join(batch)
        finally:
            run.cancel()

    async def approve(self, request: Request) -> Response:
        """`{"approval_id", "approved": bool, "reason"?}` for a call waiting in a /v1/stream request."""
        try:
            body = await read_json(request, self.guard.max_body_bytes)
            if not isinstance(body, dict) or not isinstance(body.get("approval_id"), str):
                raise BadRequest("approval_id", "must be the tool_approval_request's approval_id")
            if not isinstance(body.get("approved"), bool):
                raise BadRequest("approved", "must be true or false")
            reason = body.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise BadRequest("reason", "must be a string")
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        try:
            answer(body["approval_id"], body["approved"], reason, request_id=request.path_params["request_id"])
        except ApprovalError as exc:
            return error_response(exc.status_code, str(exc), "approval_error")
        return JSONResponse({"approval_id": body["approval_id"], "approved": body["approved"]})

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
    approvals: ApprovalStore | None = None,
    approval_ttl: float = 600.0,
) -> Starlette:
    """An ASGI app serving `processor`. `api_key` requires `Authorization: Bearer <key>` on every
    route but `/healthz` and the page; `registry` replaces the in-memory chat registry (stop and
    resume across processes)."""
    if not isinstance(processor, LMRequestProcessor):
        raise TypeError("create_app needs an LMRequestProcessor, e.g. build_lm_request_processor('local/smollm2-135m')")
    guard = Guard(api_key, max_body_bytes, max_concurrent, max_messages)
    server = _Server(processor, registry or InMemoryChatRegistry(), guard, heartbeat)
    if approvals is not None:
        server.approvals = approvals
    server.approval_ttl = approval_ttl
    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{path:path}", static_file, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/api/chat", server.chat, methods=["POST"]),
        Route("/api/chat/{chat_id}/stop", server.stop, methods=["POST"]),
        Route("/api/chat/{chat_id}/stream", server.resume, methods=["GET"]),
        Route("/v1/stream", server.stream, methods=["POST"]),
        Route("/v1/stream/{request_id}/approve", server.approve, methods=["POST"]),
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
