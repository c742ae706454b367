"""The routes' handlers: what each endpoint does with a request that passed every check.

A concurrency slot, once taken, is given back on every path: one `try/finally` where it is
taken, and every holder that outlives the handler (the response, a detached answer, a pending
approval's continuation) takes its own share.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import _json
from .._mime import sniff
from ..approval import ApprovalError, DeferredApproval, answer
from ..cache import JOB_KEY, job_context
from ..chat_registry import Answer, ChatLog, ChatRegistry, DetachedChatRegistry, InlineChatRegistry
from ..errors import ContextOverflowError, LMStreamError, StreamGoneError
from ..events import Event, EventEmitter
from ..processor import LMRequestProcessor
from ..protocols.chat import ChatTurn, chat_turn, deferred_to, run_chat_turn, stream_chat_turn
from ..protocols.errors import BadRequest, public_error_text
from ..protocols.files import FILE_URL_PREFIX, FileIntake, MemoryBlobStore, ref_of
from ..protocols.policy import ClientPolicy
from ..protocols.requests import PromptSlot, parse_chat, parse_stream
from ..protocols.ui_approvals import ApprovalStore, InMemoryApprovalStore, parse_approval_answers, take_decisions
from ..protocols.ui_stream import UIStreamMapper, message_id_of
from .answers import context_frame, event_frames, live_ui_frames, replay_ui_frames
from .bodies import read_json
from .guard import Guard, Slot, error_response
from .relay import SSEResponse
from .running import RunningRequest, start_request

__all__ = ["ChatServer"]

logger = logging.getLogger("lmstream.server")

UI_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}


class _UnloggedLog(ChatLog):
    """Positions for an answer no registry keeps (stop and resume do not see it)."""

    def __init__(self) -> None:
        self._n = 0

    def write(self, event: Event) -> str:
        self._n += 1
        return f"cont-{self._n}"

    async def aclose(self) -> None:
        return None


def _unavailable(exc: Exception) -> Response:
    """503 when the registry's store refuses (Redis down, out of memory): the client may retry.
    The log gets the failure (it names the store's address); the client only its kind."""
    logger.warning("lmstream: the chat registry failed: %s", public_error_text(exc))
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    message = (
        f"the server's chat store is unavailable right now ({type(cause).__name__}); retry shortly "
        "(the server log has the details)"
    )
    return error_response(503, message, "service_unavailable", {"retry-after": "1"})


class ChatServer:
    """State shared by the routes: the processor, the registry, the running requests."""

    def __init__(
        self,
        processor: LMRequestProcessor[Any],
        registry: ChatRegistry,
        guard: Guard,
        heartbeat: float,
        policy: ClientPolicy,
        read_timeout: float | None,
        approvals: ApprovalStore | None = None,
        approval_ttl: float = 600.0,
        write_timeout: float | None = 30.0,
        files: FileIntake | None = None,
    ) -> None:
        self.processor = processor
        #: the limits on clients' files and the store that keeps each once (by hash)
        self.files = files or FileIntake(MemoryBlobStore())
        self.registry = registry
        self.guard = guard
        self.heartbeat = heartbeat
        self.policy = policy
        self.read_timeout = read_timeout
        #: seconds one write to a client may take (a client that stops reading is cut off)
        self.write_timeout = write_timeout
        self.slot = PromptSlot.of(processor.prompt_builder)
        self.running: set[RunningRequest] = set()
        self.approvals: ApprovalStore = approvals or InMemoryApprovalStore()
        self.approval_ttl = approval_ttl

    def shut_down(self) -> None:
        """The server is stopping: every answer running in a response ends now, with an error
        saying so (the `ai` client shows it; a user's stop would be an `abort`)."""
        for run in list(self.running):
            run.end()

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
            body = await read_json(request, self.chat_body_bytes, self.read_timeout)
            cont = parse_approval_answers(body)
            blobs = await self.files.intake(body) if cont is None else {}  # new files stored, refs kept
            if len(_json.dumps(body)) > self.guard.max_body_bytes:  # besides files, the usual bound
                raise BadRequest("body", f"larger than {self.guard.max_body_bytes} bytes besides its files", 413)
            req = None if cont is not None else parse_chat(body, self.guard.max_messages, self.policy, blobs)
            hyper = self.policy.check(body.get("hyperparameters")) if cont is not None else None
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error")
        turn: ChatTurn | None = None
        if req is not None:  # the newest turns that fit the model's window, before a slot is taken
            try:  # (a worker fits queued chats itself)
                turn = chat_turn(self.processor, req, self.slot, fit=self.registry.runs_answers_here)
            except ContextOverflowError as exc:
                return error_response(400, str(exc), "context_length_exceeded")
        slot = self.guard.acquire()
        if slot is None:
            return self.guard.busy()
        try:
            if cont is not None:  # the browser answered tool approvals: go on with that answer
                return await self._continue_chat(body, cont, hyper, slot)
            assert turn is not None
            if isinstance(self.registry, DetachedChatRegistry):
                return await self._chat_detached(self.registry, turn, body, slot)
            return self._chat_inline(turn, slot)
        except Exception as exc:  # the registry's store refused (Redis down, OOM, a full queue ...)
            if getattr(exc, "status_code", None) == 429:
                return error_response(429, str(exc), "rate_limit_error", {"retry-after": "5"})
            return _unavailable(exc)
        finally:
            slot.release()  # the route's own hold; what outlives it took its share

    def _chat_inline(self, turn: ChatTurn, slot: Slot) -> SSEResponse:
        """Run the answer inside this response; the client leaving cancels it."""
        deferred = deferred_to(self.approvals, turn.chat_id, self.approval_ttl)  # stops at tool approvals
        run = RunningRequest(stream_chat_turn(self.processor, turn, deferred))
        mapper = UIStreamMapper(message_id_of(run.request_id))  # as a replay derives it
        return self._inline_response(run, turn.chat_id, mapper, slot, context_frame(turn.dropped))

    async def _continue_chat(
        self, body: Any, cont: Any, hyper: dict[str, Any] | None, slot: Slot
    ) -> Response | SSEResponse:
        """Finish the saved tool step with the browser's decisions, streaming into the same
        assistant message (its open step, its tool parts), then the model's next step."""
        chat_id = body.get("id")
        if not isinstance(chat_id, str):
            return error_response(400, "id: must be a string", "invalid_request_error")
        try:
            pending, decisions = await take_decisions(self.approvals, chat_id, cont)
        except ApprovalError as exc:
            return error_response(exc.status_code, str(exc), "approval_error")
        except LMStreamError as exc:  # the store failed (Redis down): never its address to the client
            return _unavailable(exc)
        step = pending.step
        saving = deferred_to(self.approvals, chat_id, self.approval_ttl, pending.message_id)
        resume = DeferredApproval(saving.save, resume=step, decisions=decisions)
        run = start_request(self.processor, deferred_approval=resume, hyperparameters=hyper)
        mapper = UIStreamMapper(pending.message_id, step=step.step, announced=tuple(c.id for c in step.calls))
        return self._inline_response(run, chat_id, mapper, slot)

    def _inline_response(
        self, run: RunningRequest, chat_id: str, mapper: UIStreamMapper, slot: Slot, notice: bytes = b""
    ) -> SSEResponse:
        """The answer runs in this response. With a detached registry (Redis) that is only a tool
        approval's continuation: it runs on the node that took the answer, unlogged."""
        registry = self.registry
        self._start(slot, run)
        return SSEResponse(
            self._inline_frames(registry, run, chat_id, mapper, notice),
            on_disconnect=run.cancel,
            heartbeat=self.heartbeat,
            write_timeout=self.write_timeout,
            headers=UI_HEADERS,
            on_end=lambda: self._finish(slot, run),
        )

    @staticmethod
    async def _inline_frames(
        registry: ChatRegistry, run: RunningRequest, chat_id: str, mapper: UIStreamMapper, notice: bytes = b""
    ) -> AsyncIterator[bytes]:
        """Registered when the response starts, so a response that never starts leaves no entry."""
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            run.cancel()

        log = await registry.open(chat_id, stop) if isinstance(registry, InlineChatRegistry) else _UnloggedLog()
        async for frame in live_ui_frames(run, log, lambda: stopped, mapper, notice):
            yield frame

    async def _chat_detached(
        self, registry: DetachedChatRegistry, turn: ChatTurn, body: Any, slot: Slot
    ) -> Response | SSEResponse:
        """Start the answer detached (this process or a worker) and follow it like a resume; the
        client leaving does not cancel it (it may come back), only stop does. An answer running in
        this process keeps its slot until it ends, however early its response ends."""
        deferred = deferred_to(self.approvals, turn.chat_id, self.approval_ttl)  # any node takes the answer
        processor = self.processor

        def run(emitter: EventEmitter) -> Any:
            return run_chat_turn(processor, turn, deferred, emitter)

        job = {k: v for k, v in body.items() if k not in ("hyperparameters", JOB_KEY)}
        job[JOB_KEY] = job_context()  # the tenant and no-cache this node saw, for the worker's cache
        if turn.hyperparameters:
            job["hyperparameters"] = turn.hyperparameters  # what the policy let through, nothing more
        running = await registry.launch(turn.chat_id, Answer(run=run, job=job))
        if running is not None:
            slot.share()
            running.add_done_callback(lambda _: slot.release())
        items = await registry.resume(turn.chat_id)
        if items is None:  # pragma: no cover - launch claims the chat first
            return error_response(503, "the answer could not be started", "service_unavailable")
        slot.share()
        return SSEResponse(
            replay_ui_frames(items, notice=context_frame(turn.dropped)),
            on_disconnect=None,  # the answer goes on; only this response's reading stops
            heartbeat=self.heartbeat,
            write_timeout=self.write_timeout,
            headers=UI_HEADERS,
            on_end=slot.release,
        )

    async def stream(self, request: Request) -> Response | SSEResponse:
        if not self.registry.runs_answers_here:  # --queue: this node has no model to run it with
            return error_response(
                501,
                "POST /v1/stream runs the model in the web node, and this node only queues answers for "
                "workers (--queue): use POST /api/chat or POST /v1/chat/completions, which the workers run",
                "not_implemented",
            )
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
                approval_timeout=self.approval_ttl,  # answered through POST /v1/stream/{request_id}/approve
            )
            self._start(slot, run)
            return SSEResponse(
                event_frames(run),
                on_disconnect=run.cancel,
                heartbeat=self.heartbeat,
            write_timeout=self.write_timeout,
                on_end=lambda: self._finish(slot, run),
            )
        finally:
            slot.release()

    async def approve(self, request: Request) -> Response:
        """`{"approval_id", "approved": bool, "reason"?}` for a call waiting in a /v1/stream request."""
        try:
            body = await read_json(request, self.guard.max_body_bytes, self.read_timeout)
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
            replay_ui_frames(items, after), on_disconnect=None, heartbeat=self.heartbeat,
            write_timeout=self.write_timeout, headers=UI_HEADERS
        )

    @property
    def chat_body_bytes(self) -> int:
        """A chat body's bound: the operator's, plus room for the files a request may carry
        (base64: 4 bytes per 3)."""
        return self.guard.max_body_bytes + (self.files.limits.max_request_bytes * 4 + 2) // 3

    async def file_limits(self, request: Request) -> Response:
        """`GET /api/files`: the limits on files, which the page shows before an upload."""
        return JSONResponse(self.files.limits.describe())

    async def file(self, request: Request) -> Response:
        """`GET /api/files/<sha256>`: a stored file, for the page's thumbnails. Served as data
        that never runs: its type from its bytes, nosniff, a sandbox CSP, and a download for
        anything but a raster image."""
        digest = str(request.path_params.get("digest", ""))
        data = await self.files.store.get(digest) if ref_of(FILE_URL_PREFIX + digest) else None
        if data is None:
            return error_response(404, "no such file (files are kept as long as a chat)", "not_found")
        mime = sniff(data) or "application/octet-stream"
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600, immutable",
        }
        if not mime.startswith("image/"):
            headers["Content-Disposition"] = "attachment"
        return Response(data, media_type=mime, headers=headers)

    async def healthz(self, request: Request) -> Response:
        """200 `{"status": "ok", ...}`, or 503 `{"status": "degraded", "down": [...]}` naming what
        does not work (Redis unreachable; with `--queue`, no worker alive), never an address."""
        try:
            answers = await self.registry.running()
            store = await self.registry.health()
        except LMStreamError as exc:
            logger.warning("lmstream: /healthz: the chat registry failed: %s", public_error_text(exc))
            answers, store = 0, {"down": ["store"]}
        down = list(store.get("down") or [])
        body: dict[str, Any] = {
            "status": "degraded" if down else "ok",
            "streams": self.guard.active,
            "max_concurrent": self.guard.max_concurrent,
            "running": len(self.running),
            "answers": answers,
        }
        body.update({k: v for k, v in store.items() if k != "down"})  # queued jobs, live workers
        if down:
            body["down"] = down
        engine = self.processor.lm_invoker.engine_stats()  # the embedded model's sequences and queue
        if engine is not None:
            body["engine"] = engine
        cache = self.processor.cache
        if cache is not None:  # hits, misses, joins and the bytes held (never the store's address)
            body["cache"] = await cache.stats()
        cooling = self.processor.lm_invoker.cooling()  # a pool's deployments that failed and wait
        if cooling:
            body["cooling"] = cooling
        return JSONResponse(body, status_code=503 if down else 200)
