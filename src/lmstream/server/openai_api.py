"""The OpenAI-compatible routes: `POST /v1/chat/completions`, `POST /v1/responses`, `GET /v1/models`.

Thin on purpose: the protocols package turns bodies into processor arguments and events into
OpenAI's objects; this module applies the same policy as `/api/chat` (key and Host/Origin checks
run before it; body limits, the hyperparameter allow-list and `--max-tokens` ceiling, concurrency
slots with 429 + Retry-After here), runs the answer inside the response (the client leaving
cancels it at once) or, with `--redis --queue`, on a worker, and frames what the mappers give.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import _json
from ..cache import JOB_KEY, job_context
from ..chat_registry import Answer, DetachedChatRegistry
from ..events import Event, EventEmitter, EventType
from ..processor import LMRequestProcessor
from ..protocols.errors import BadRequest, public_error_text
from ..protocols.files import check_attachments
from ..protocols.openai_chat import (
    ChatCompletionChunks,
    ChatCompletionRequest,
    ChatCompletionResult,
    OpenAIError,
    parse_chat_completion,
    release,
)
from ..protocols.openai_responses import ResponsesEvents, ResponsesRequest, parse_responses
from ..protocols.openai_turn import JOB_KIND, prepare
from ..protocols.sse import DONE, data_frame, named_frame
from .bodies import read_json
from .guard import Slot, error_response
from .handlers import ChatServer
from .relay import SSEResponse
from .running import RunningRequest, start_request

__all__ = ["OpenAIRoutes"]

logger = logging.getLogger("lmstream.server")

def _error(exc: OpenAIError) -> Response:
    headers = {"retry-after": "1"} if exc.status == 429 else None
    return error_response(exc.status, str(exc), exc.type, headers, param=exc.param, code=exc.code)


class OpenAIRoutes:
    """The routes, over the `/api/chat` server's processor, guard, policy and registry."""

    def __init__(self, server: ChatServer, served_model_names: Sequence[str], allow_client_tools: bool) -> None:
        names = tuple(dict.fromkeys(n for n in served_model_names if n))
        if not names:
            raise ValueError("served_model_names must name at least one model")
        self.server = server
        self.names = names
        self.allow_client_tools = allow_client_tools
        self.created = int(time.time())
        self._stops: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ models
    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "lmstream"}

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model(n) for n in self.names]})

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self.names:
            return self._unknown_model(name)
        return JSONResponse(self._model(name))

    def _unknown_model(self, name: str) -> Response:
        shown = name if len(name) <= 80 else name[:80] + "..."
        return error_response(
            404,
            f"The model `{shown}` does not exist on this server; it serves: {', '.join(self.names)}",
            "invalid_request_error",
            param="model",
            code="model_not_found",
        )

    # ------------------------------------------------------------------ routes
    async def chat_completions(self, request: Request) -> Response | SSEResponse:
        return await self._handle(request, "chat")

    async def responses(self, request: Request) -> Response | SSEResponse:
        return await self._handle(request, "responses")

    async def _handle(self, request: Request, api: str) -> Response | SSEResponse:
        server = self.server
        try:
            body = await read_json(request, server.chat_body_bytes, server.read_timeout)
            req: ChatCompletionRequest | ResponsesRequest = (
                parse_responses(body, server.guard.max_messages)
                if api == "responses"
                else parse_chat_completion(body, server.guard.max_messages)
            )
            files = [a for m in req.messages for a in m.attachments]
            check_attachments(files, server.files.limits, "messages" if api == "chat" else "input")
            in_files = sum((len(a.data) + 2) // 3 * 4 + 80 for a in files)  # each file's data: URL
            if len(_json.dumps(body)) - in_files > server.guard.max_body_bytes:  # besides files, the usual bound
                raise BadRequest("body", f"larger than {server.guard.max_body_bytes} bytes besides its files", 413)
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error", param=exc.field)
        except OpenAIError as exc:
            return _error(exc)
        if req.model not in self.names:
            return self._unknown_model(req.model)
        try:
            hyper = server.policy.check(req.sampling or None, where="")
            processor, kwargs, client_tools = prepare(
                server.processor, server.slot.key, req, hyper, self.allow_client_tools
            )
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "invalid_request_error", param=exc.field)
        except OpenAIError as exc:
            return _error(exc)
        if "no-cache" in request.headers.get("cache-control", "").lower():
            kwargs["cache"] = False  # the client asks for a fresh answer (HTTP's own words)
        slot = server.guard.acquire()
        if slot is None:
            return server.guard.busy()
        try:
            mapper: Any = (
                ResponsesEvents(req.model, client_tools=client_tools, request=req)  # type: ignore[arg-type]
                if api == "responses"
                else ChatCompletionChunks(
                    req.model,
                    include_usage=getattr(req, "include_usage", False),
                    client_tools=client_tools,
                )
            )
            registry = server.registry
            if isinstance(registry, DetachedChatRegistry) and not registry.runs_answers_here:
                job = {"kind": JOB_KIND, "api": api, "body": body, "hyperparameters": hyper}
                if kwargs.get("cache") is False:
                    job["no_cache"] = True
                # the worker's response cache keys and bypasses as this node would (lmstream.cache.JOB_KEY)
                job[JOB_KEY] = {**job_context(), "bypass": kwargs.get("cache") is False or job_context()["bypass"]}
                return await self._queued(registry, job, mapper, req.stream, slot, api)
            run = start_request(processor, **kwargs)
            done: Callable[[], Any] = lambda: _spawn_release(processor, server.processor)  # noqa: E731
            if req.stream:
                server._start(slot, run)
                try:
                    first, left = await _first_event(request, run, server.heartbeat)
                except BaseException:
                    server._finish(slot, run)
                    done()
                    raise
                if left or (first is not None and first.done() and _failed_first(first)):
                    # the client left, or the answer failed before its first token: an HTTP
                    # status the SDKs map (429 + Retry-After for a rate-limited upstream)
                    try:
                        return await _early_end(run, first, left)
                    finally:
                        server._finish(slot, run)
                        done()

                def end() -> None:
                    server._finish(slot, run)
                    done()

                return SSEResponse(
                    _frames(_after(first, run.events()), run, mapper, api),
                    on_disconnect=run.cancel,
                    heartbeat=server.heartbeat,
                    write_timeout=server.write_timeout,
                    on_end=end,
                )
            server.running.add(run)
            try:
                return await _whole(request, run.events(), run.cancel, mapper, api)
            finally:
                server.running.discard(run)
                run.cancel()
                done()
        except Exception as exc:  # the registry's store refused (Redis down, OOM, ...)
            logger.warning("lmstream: an OpenAI request could not start: %s", public_error_text(exc))
            return error_response(503, "the server cannot take the request now; retry", "service_unavailable",
                                  {"retry-after": "1"})  # fmt: skip
        finally:
            slot.release()

    async def _queued(
        self, registry: DetachedChatRegistry, job: dict[str, Any], mapper: Any, stream: bool, slot: Slot, api: str
    ) -> Response | SSEResponse:
        """`--redis --queue`: a worker runs the answer; this response follows its events. The
        client leaving stops it on the worker."""
        chat_id = f"oai-{uuid.uuid4().hex}"

        def never(emitter: EventEmitter) -> Any:  # pragma: no cover - queued answers run on workers
            raise RuntimeError("a queued OpenAI request runs on a worker")

        await registry.launch(chat_id, Answer(run=never, job=job))
        items = await registry.resume(chat_id)
        if items is None:  # pragma: no cover - launch claims the chat first
            return error_response(503, "the answer could not be started", "service_unavailable")

        def stop() -> None:
            task = asyncio.get_running_loop().create_task(registry.stop(chat_id))
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)

        events = _positioned_events(items)
        if stream:
            slot.share()
            return SSEResponse(
                _frames(events, None, mapper, api), on_disconnect=stop, heartbeat=self.server.heartbeat,
                write_timeout=self.server.write_timeout,
                on_end=slot.release,
            )  # fmt: skip
        return await _whole(None, events, stop, mapper, api)


def _spawn_release(processor: LMRequestProcessor[Any], shared: LMRequestProcessor[Any]) -> None:
    if processor is shared:
        return
    task = asyncio.get_running_loop().create_task(release(processor, shared))
    _RELEASING.add(task)
    task.add_done_callback(_RELEASING.discard)


_RELEASING: set[asyncio.Task[None]] = set()


async def _first_event(
    request: Request, run: RunningRequest, wait: float
) -> tuple[asyncio.Future[Event] | None, bool]:
    """The answer's first event, awaited before the response's status is sent (for at most
    `wait` seconds: then the stream starts anyway and its heartbeats keep proxies patient).
    Returns (the pending or finished first step, whether the client left meanwhile)."""
    first: asyncio.Future[Event] = asyncio.ensure_future(anext(run.events()))
    watcher: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
    waiting: set[asyncio.Future[Any]] = {first, watcher}
    try:
        done, _ = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    return first, watcher in done and first not in done


def _failed_first(first: asyncio.Future[Event]) -> bool:
    """The answer ended before its first token with a failure (not a cancellation)."""
    if first.cancelled() or first.exception() is not None:
        return True
    ev = first.result()
    return ev.type == EventType.ERROR and ev.metadata.get("error_type") != "CancelledError"


async def _early_end(run: RunningRequest, first: asyncio.Future[Event] | None, left: bool) -> Response:
    """The answer ends before its stream starts: the client left (cancel it), or it failed."""
    if left:
        run.cancel()
    failure: dict[str, Any] = {"error_type": "CancelledError"}
    with contextlib.suppress(BaseException):
        if first is not None:
            ev = await first
            if ev.type == EventType.ERROR:
                failure = {"value": str(ev.value), **ev.metadata}
    with contextlib.suppress(Exception):  # the stream raises after its error event
        async for _ in run.events():
            pass
    if left:
        return Response(status_code=499)
    return _failure_response(failure)


async def _after(first: asyncio.Future[Event] | None, rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """`first` (the step already taken), then the rest of the events."""
    if first is not None:
        try:
            yield await first
        except StopAsyncIteration:
            return
    async for ev in rest:
        yield ev


async def _positioned_events(items: Any) -> AsyncIterator[Event]:
    try:
        async for _position, ev in items:
            yield ev
            if ev.type in (EventType.DONE, EventType.ERROR):
                return
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


def _start_chunks(mapper: Any) -> list[dict[str, Any]]:
    start = mapper.start()
    return start if isinstance(start, list) else [start]


def _error_chunks(mapper: Any, message: str, code: str) -> list[dict[str, Any]]:
    out = mapper.error(message, "server_error", code)
    return out if isinstance(out, list) else [out]


async def _frames(
    events: AsyncIterator[Event], run: RunningRequest | None, mapper: Any, api: str
) -> AsyncIterator[bytes]:
    """The answer's SSE frames. A stream ends with its finish (then `[DONE]` for Chat
    Completions) or with an error chunk; never with `[DONE]` after a finish that did not happen."""
    frame = named_frame if api == "responses" else data_frame
    batch: list[bytes] = []
    try:
        yield b"".join(frame(c) for c in _start_chunks(mapper))
        try:
            async for ev in events:
                if run is not None:
                    ev = run.terminal(ev)
                if ev.type == EventType.ERROR and ev.metadata.get("error_type") != "CancelledError":
                    logger.warning(
                        "lmstream: an answer failed: %s: %s",
                        ev.metadata.get("error_type"),
                        public_error_text(str(ev.value)),
                    )
                for chunk in mapper.feed(ev.type, ev.value, ev.metadata):
                    batch.append(frame(chunk))
                if batch and (run is None or not run.pending()):
                    yield b"".join(batch)
                    batch.clear()
        except Exception as exc:  # a store that failed while we read (Redis down)
            logger.warning("lmstream: an OpenAI stream failed: %s", public_error_text(exc))
            if not mapper.closed:
                batch.extend(frame(c) for c in _error_chunks(mapper, "the answer's stream broke", "stream_broken"))
        if not mapper.closed:  # ended without done or error: it was cancelled
            batch.extend(frame(c) for c in _error_chunks(mapper, "the answer was cancelled", "cancelled"))
        if mapper.finished and api != "responses":
            batch.append(DONE)
        if batch:
            yield b"".join(batch)
    finally:
        if run is not None:
            run.cancel()


async def _whole(
    request: Request | None, events: AsyncIterator[Event], cancel: Callable[[], None], mapper: Any, api: str
) -> Response:
    """A non-streaming answer: folded from its events; the client leaving cancels it at once."""
    result = ChatCompletionResult(mapper._base["model"], mapper.client_tools) if api == "chat" else None
    failure: dict[str, Any] | None = None

    async def collect() -> None:
        nonlocal failure
        with contextlib.suppress(Exception):  # a failure ends with its error event, then raises
            async for ev in events:
                if ev.type == EventType.ERROR:
                    failure = {"value": str(ev.value), **ev.metadata}
                    continue  # the stream raises next (suppressed): its exception is retrieved
                if result is not None:
                    result.feed(ev.type, ev.value, ev.metadata)
                else:
                    mapper.feed(ev.type, ev.value, ev.metadata)

    task = asyncio.ensure_future(collect())
    watcher = asyncio.ensure_future(_disconnected(request)) if request is not None else None
    try:
        waiting = {task} if watcher is None else {task, watcher}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():  # the client left: stop the answer now
            cancel()
            await task
            return Response(status_code=499)
    finally:
        if watcher is not None:
            watcher.cancel()
    if failure is not None:
        return _failure_response(failure)
    if result is not None:
        if result.done is None:
            return error_response(500, "the answer ended without finishing", "server_error", code="cancelled")
        body = result.body()
    else:
        if mapper.final is None:
            return error_response(500, "the answer ended without finishing", "server_error", code="cancelled")
        body = mapper.final
    return JSONResponse(body, headers=_extension_headers(body.get("lmstream") or {}))


def _failure_response(meta: dict[str, Any]) -> Response:
    kind = str(meta.get("error_type") or "Error")
    logger.warning("lmstream: an answer failed: %s: %s", kind, public_error_text(str(meta.get("value", ""))))
    if kind == "ContextOverflowError":
        return error_response(400, str(meta.get("value")), "invalid_request_error", code="context_length_exceeded")
    if kind == "RateLimitError" or meta.get("status_code") == 429:
        return error_response(
            429, f"the upstream model is rate limited ({kind}); retry shortly", "rate_limit_error",
            {"retry-after": "1"}, code="rate_limited",
        )  # fmt: skip
    if kind == "LMTimeoutError":
        return error_response(
            504, f"the upstream model did not answer in time ({kind})", "server_error", code="timeout"
        )
    if kind in ("ConfigurationError", "PromptError"):
        return error_response(400, f"the request cannot run on this model ({kind}): {meta.get('value')}",
                              "invalid_request_error")  # fmt: skip
    if kind == "CancelledError":
        return error_response(503, "the answer was cancelled", "service_unavailable", {"retry-after": "1"},
                              code="cancelled")  # fmt: skip
    return error_response(
        502, f"the upstream model failed ({kind}); the server log has the details", "server_error",
        code="upstream_error",
    )  # fmt: skip


def _extension_headers(ext: dict[str, Any]) -> dict[str, str]:
    """Cost and cache status as headers too (a client that reads no body fields can log them)."""
    headers: dict[str, str] = {}
    cost = ext.get("cost")
    if isinstance(cost, (int, float)):
        headers["x-lmstream-cost-usd"] = f"{cost:.10f}".rstrip("0").rstrip(".") or "0"
    cache = ext.get("cache")
    if isinstance(cache, dict):
        headers["x-lmstream-cache"] = "joined" if cache.get("joined") else ("hit" if cache.get("hit") else "miss")
    return headers


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (its body was read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
