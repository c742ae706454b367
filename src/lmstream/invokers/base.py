"""The invoker base class and the one shared accumulator.

A provider implements `_stream()`: an async generator that translates its wire stream into
normalised deltas. A plain `str` is a text delta (the hot path: no object per token); anything
else is one of the small delta classes below. `BaseLMInvoker.invoke()` runs the generator
through one accumulator that emits events and builds the `LMOutput`, so every provider
streams, retries and fails the same way.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .. import _json
from ..errors import (
    ConfigurationError,
    LMStreamError,
    LMTimeoutError,
    ProviderError,
    StreamInterruptedError,
)
from ..events import Event, EventEmitter, EventLevel, EventType
from ..prompt import Message
from ..retry import RetryConfig
from ..types import LMOutput, ThinkingBlock, TokenUsage, ToolCall
from .params import COMMON_PARAMS as _COMMON_PARAMS

if TYPE_CHECKING:
    from ..structured import PartialJSONParser
    from ..tools import Tool

__all__ = [
    "BaseLMInvoker",
    "ThinkingDelta",
    "ToolCallDelta",
    "UsageDelta",
    "FinishDelta",
    "RequestContext",
    "current_request",
]

logger = logging.getLogger("lmstream")


# --------------------------------------------------------------------------- deltas


class ThinkingDelta:
    """A fragment of reasoning text; `end=True` closes the current thinking block.

    `signature` is the provider's proof of the block (Anthropic), which must travel back with
    it in a tool loop.
    """

    __slots__ = ("end", "signature", "text")

    def __init__(self, text: str = "", end: bool = False, signature: str | None = None) -> None:
        self.text = text
        self.end = end
        self.signature = signature


class ToolCallDelta:
    """A fragment of a streamed tool call, keyed by the provider's index within the response."""

    __slots__ = ("arguments", "id", "index", "name", "signature")

    def __init__(
        self,
        index: int,
        id: str | None = None,
        name: str | None = None,
        arguments: str = "",
        signature: bytes | str | None = None,
    ) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
        self.signature = signature


class UsageDelta:
    """Token usage; fields left as None keep what an earlier delta reported."""

    __slots__ = ("cached_tokens", "input_tokens", "output_tokens", "reasoning_tokens")

    def __init__(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens


class FinishDelta:
    """The provider's end marker was seen; `reason` is normalised (stop, length, tool_calls, ...)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str | None) -> None:
        self.reason = reason


# --------------------------------------------------------------------------- request context


_request_ids = itertools.count(1)
_REQ_PREFIX = os.urandom(3).hex()


class RequestContext:
    """One logical request (one `process()` call, or one standalone `invoke()`)."""

    __slots__ = ("_blocks", "emitter", "first_token_at", "request_id", "started")

    def __init__(self, emitter: EventEmitter | None) -> None:
        self.request_id = f"req_{_REQ_PREFIX}_{next(_request_ids)}"
        self.emitter = emitter
        self.started = time.perf_counter()
        self._blocks = 0
        self.first_token_at: float | None = None

    def block_meta(self) -> dict[str, Any]:
        """Metadata shared (same dict) by every event of one new content block."""
        self._blocks += 1
        return {"request_id": self.request_id, "block_id": f"{self.request_id}.{self._blocks}"}

    async def emit(self, value: Any, type: str, level: EventLevel = EventLevel.INFO, **meta: Any) -> None:
        if self.emitter is None:
            return
        meta["request_id"] = self.request_id
        await self.emitter.dispatch(Event(value, type, level, meta))


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("lmstream_request", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


# --------------------------------------------------------------------------- invoker


class BaseLMInvoker:
    """Turns messages into a streamed `LMOutput`. Subclasses implement `_stream()`.

    Every invoker takes the same keywords: `model_name`, `api_key`, `base_url`,
    `default_hyperparameters`, `retry_config`, `tools`, `response_schema`.
    """

    provider: ClassVar[str] = "base"
    #: provider-specific hyperparameters passed through as they are (name -> type check, help)
    extra_params: ClassVar[Mapping[str, tuple[Callable[[Any], bool], str]]] = {}

    def __init__(
        self,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        default_hyperparameters: Mapping[str, Any] | None = None,
        retry_config: RetryConfig | None = None,
        tools: Sequence[Any] | None = None,
        response_schema: Any = None,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ConfigurationError(f"{type(self).__name__} needs a model_name (a non-empty string)")
        self.model_name = model_name
        self._api_key = api_key
        self.base_url = base_url
        self.retry_config = retry_config or RetryConfig()
        self.default_hyperparameters = self.validate_hyperparameters(default_hyperparameters or {})
        self.tools: list[Tool] = []
        if tools:
            self.set_tools(tools)
        self.response_schema: dict[str, Any] | None = None
        self._schema_model: Any = None
        if response_schema is not None:
            self.set_response_schema(response_schema)

    # ----- configuration
    @property
    def model_id(self) -> str:
        return f"{self.provider}/{self.model_name}"

    def __repr__(self) -> str:  # never shows the API key
        base = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model_name={self.model_name!r}{base})"

    def set_tools(self, tools: Sequence[Any]) -> None:
        from ..tools import to_tool

        self.tools = [to_tool(t) for t in tools]

    def clear_tools(self) -> None:
        self.tools = []

    def set_response_schema(self, schema: Any) -> None:
        from ..structured import schema_of

        self.response_schema, self._schema_model = schema_of(schema) if schema is not None else (None, None)

    def validate_hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check names and types against the shared vocabulary plus this provider's extras."""
        if not isinstance(params, Mapping):
            raise ConfigurationError(f"hyperparameters must be a dict, got {type(params).__name__}")
        out: dict[str, Any] = {}
        for name, value in params.items():
            spec = _COMMON_PARAMS.get(name) or self.extra_params.get(name)
            if spec is None:
                known = sorted({*_COMMON_PARAMS, *self.extra_params})
                raise ConfigurationError(
                    f"unknown hyperparameter {name!r} for {type(self).__name__}; accepted: {', '.join(known)}"
                )
            check, expected = spec
            if value is not None and not check(value):
                raise ConfigurationError(
                    f"hyperparameter {name!r} must be {expected}, got {type(value).__name__} {value!r}"
                )
            if value is not None:
                out[name] = value
        return out

    # ----- the one public call
    async def invoke(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        hyperparameters: Mapping[str, Any] | None = None,
        event_emitter: EventEmitter | None = None,
    ) -> LMOutput:
        """Stream one model call, emitting events; returns the accumulated `LMOutput`.

        Called by `LMRequestProcessor.process()` inside its request; called directly, it is a
        request of its own and ends its events with `done` (or `error`).
        """
        msgs = [Message.user(messages)] if isinstance(messages, str) else [Message.coerce(m) for m in messages]
        params = {**self.default_hyperparameters, **self.validate_hyperparameters(hyperparameters or {})}
        ctx = _current.get()
        if ctx is not None:
            return await self._invoke_with_retries(ctx, msgs, params)
        ctx = RequestContext(event_emitter)
        if event_emitter is not None:
            event_emitter._begin_request()

        async def work() -> tuple[LMOutput, LMOutput]:
            out = await self._invoke_with_retries(ctx, msgs, params)
            return out, out

        return await run_request(ctx, work)

    async def _invoke_with_retries(self, ctx: RequestContext, msgs: list[Message], params: dict[str, Any]) -> LMOutput:
        cfg = self.retry_config
        if cfg.timeout is None:
            return await self._attempts(ctx, msgs, params, cfg)
        try:
            async with asyncio.timeout(cfg.timeout):
                return await self._attempts(ctx, msgs, params, cfg)
        except TimeoutError as exc:
            raise LMTimeoutError(
                f"{self.model_id}: request did not finish within the total timeout of {cfg.timeout}s "
                "(RetryConfig.timeout)"
            ) from exc

    async def _attempts(
        self, ctx: RequestContext, msgs: list[Message], params: dict[str, Any], cfg: RetryConfig
    ) -> LMOutput:
        attempt = 0
        while True:
            acc = _Accumulator(ctx, self.model_name, self.response_schema is not None)
            try:
                out = await acc.run(self._stream(msgs, params))
            except StreamInterruptedError:
                raise
            except (LMStreamError, OSError) as exc:
                if acc.started:
                    raise acc.interrupted(exc) from exc
                err = (
                    exc
                    if isinstance(exc, LMStreamError)
                    else ProviderError(f"connection failed: {exc}", provider=self.provider)
                )
                retryable = getattr(err, "retryable", False) or isinstance(exc, OSError)
                if not retryable or attempt >= cfg.max_retries:
                    if err is exc:
                        raise
                    raise err from exc
                attempt += 1
                delay = cfg.delay(attempt, getattr(err, "retry_after", None))
                logger.info("%s: %s; retry %d/%d in %.2fs", self.model_id, err, attempt, cfg.max_retries, delay)
                await asyncio.sleep(delay)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if acc.started:
                    raise acc.interrupted(exc) from exc
                raise
            if self.response_schema is not None and not out.tool_calls:
                from ..structured import validate_structured

                out.structured_output = validate_structured(out.text, self.response_schema, self._schema_model)
            return out

    def _stream(self, messages: list[Message], params: dict[str, Any]) -> AsyncIterator[Any]:
        """Yield normalised deltas for one attempt. Raise lmstream errors for failures."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release pooled connections; the invoker stays usable (it reopens on demand)."""

    async def __aenter__(self) -> BaseLMInvoker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


T = TypeVar("T")


async def run_request(ctx: RequestContext, work: Callable[[], Awaitable[tuple[T, LMOutput]]]) -> T:
    """Run one registered request: its events end with one `done` or one `error`, and the
    emitter learns it finished (so `stream()` can end) however it ends."""
    token = _current.set(ctx)
    if ctx.emitter is not None:
        ctx.emitter._started(ctx)  # no-op unless process() registered it at call time
    try:
        try:
            result, output = await work()
        except BaseException as exc:
            await emit_failure(ctx, exc)
            raise
        await emit_done(ctx, output)
        return result
    finally:
        _current.reset(token)
        if ctx.emitter is not None:
            ctx.emitter._end_request()


async def emit_done(ctx: RequestContext, out: LMOutput) -> None:
    await ctx.emit(
        "",
        EventType.DONE,
        EventLevel.INFO,
        usage=out.usage.to_dict(),
        finish_reason=out.finish_reason,
        duration=out.duration,
        time_to_first_token=out.time_to_first_token,
    )


async def emit_failure(ctx: RequestContext, exc: BaseException) -> None:
    """The last event of a failed or cancelled request."""
    if ctx.emitter is None:
        return
    if isinstance(exc, asyncio.CancelledError):
        # Cancellation must end the request at once: a stuck handler gets no more than a moment.
        event = Event(
            "request cancelled",
            EventType.ERROR,
            EventLevel.ERROR,
            {"request_id": ctx.request_id, "error_type": "CancelledError"},
        )
        await ctx.emitter.deliver_bounded(event, 0.2)
        return
    meta: dict[str, Any] = {"error_type": type(exc).__name__}
    status = getattr(exc, "status_code", None)
    if status is not None:
        meta["status_code"] = status
    await ctx.emit(str(exc), EventType.ERROR, EventLevel.ERROR, **meta)


# --------------------------------------------------------------------------- accumulator


class _ToolBuf:
    __slots__ = ("id", "name", "parts", "signature")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []
        self.signature: bytes | str | None = None


class _Accumulator:
    """Turns one attempt's deltas into events and an `LMOutput` (O(n) in stream length)."""

    def __init__(self, ctx: RequestContext, model: str, structured: bool = False) -> None:
        self.ctx = ctx
        self.partial: PartialJSONParser | None = None
        if structured:
            from ..structured import PartialJSONParser

            self.partial = PartialJSONParser()
        self.model = model
        self.started = False  # a delta with content was emitted: no silent retry from here
        self.text_parts: list[str] = []
        self.thinking_parts: list[str] = []
        self.thinking_blocks: list[ThinkingBlock] = []
        self._think_start = 0
        self._signature: str | None = None
        self.tools: dict[int, _ToolBuf] = {}
        self.usage = TokenUsage()
        self.finish: str | None = None
        self.finished = False
        self.t0 = time.perf_counter()
        self.ttft: float | None = None

    def output(self) -> LMOutput:
        return LMOutput(
            text="".join(self.text_parts),
            thinking="".join(self.thinking_parts),
            thinking_blocks=self.thinking_blocks,
            tool_calls=self._tool_calls(),
            usage=self.usage,
            finish_reason=self.finish,
            duration=time.perf_counter() - self.ctx.started,
            time_to_first_token=self.ttft,
            model=self.model,
        )

    def _tool_calls(self) -> list[ToolCall]:
        calls = []
        for index in sorted(self.tools):
            buf = self.tools[index]
            raw = "".join(buf.parts)
            try:
                args = _json.loads(raw) if raw.strip() else {}
            except ValueError:
                args = {"_raw": raw}
            if not isinstance(args, dict):
                args = {"value": args}
            calls.append(ToolCall(buf.id or f"call_{index}", buf.name or "", args, buf.signature))
        return calls

    def interrupted(self, exc: BaseException) -> StreamInterruptedError:
        out = self.output()
        out.finish_reason = "error"
        return StreamInterruptedError(
            f"stream interrupted after {len(self.text_parts)} text deltas: {exc}", partial_output=out, cause=exc
        )

    def _first(self) -> None:
        self.started = True
        now = time.perf_counter()
        self.ttft = now - self.ctx.started
        if self.ctx.first_token_at is None:
            self.ctx.first_token_at = now

    async def run(self, deltas: AsyncIterator[Any]) -> LMOutput:
        ctx = self.ctx
        emitter = ctx.emitter
        text_parts = self.text_parts
        append = text_parts.append
        sync = emitter is not None and emitter._all_sync
        dispatch_nowait = emitter.dispatch_nowait if emitter is not None else None
        RESPONSE = EventType.RESPONSE
        INFO = EventLevel.INFO
        text_meta: dict[str, Any] | None = None
        thinking_meta: dict[str, Any] | None = None
        try:
            async for d in deltas:
                if d.__class__ is str:  # ---- hot path: one text token
                    if not d:
                        continue
                    if not self.started:
                        self._first()
                    if thinking_meta is not None:
                        await self._end_thinking(thinking_meta)
                        thinking_meta = None
                    append(d)
                    if emitter is not None:
                        if text_meta is None:
                            text_meta = ctx.block_meta()
                        if sync:
                            dispatch_nowait(Event(d, RESPONSE, INFO, text_meta))  # type: ignore[misc]
                        else:
                            await emitter.dispatch(Event(d, RESPONSE, INFO, text_meta))
                    if self.partial is not None and self.partial.feed(d) and emitter is not None:
                        await self._emit(text_meta, self.partial.value, EventType.DATA)  # type: ignore[arg-type]
                    continue
                cls = d.__class__
                if cls is ThinkingDelta:
                    if d.text:
                        if not self.started:
                            self._first()
                        self.thinking_parts.append(d.text)
                        if thinking_meta is None:
                            thinking_meta = ctx.block_meta()
                            text_meta = None
                            self._think_start = len(self.thinking_parts) - 1
                            await self._emit(thinking_meta, "", EventType.THINKING_START)
                        await self._emit(thinking_meta, d.text, EventType.THINKING)
                    if d.signature:
                        self._signature = d.signature
                    if d.end and thinking_meta is not None:
                        await self._end_thinking(thinking_meta)
                        thinking_meta = None
                elif cls is ToolCallDelta:
                    if not self.started:
                        self.started = True
                    buf = self.tools.get(d.index)
                    if buf is None:
                        buf = self.tools[d.index] = _ToolBuf()
                    if d.id:
                        buf.id = d.id
                    if d.name:
                        buf.name = d.name
                    if d.arguments:
                        buf.parts.append(d.arguments)
                    if d.signature:
                        buf.signature = d.signature
                elif cls is UsageDelta:
                    u = self.usage
                    if d.input_tokens is not None:
                        u.input_tokens = d.input_tokens
                    if d.output_tokens is not None:
                        u.output_tokens = d.output_tokens
                    if d.cached_tokens is not None:
                        u.cached_tokens = d.cached_tokens
                    if d.reasoning_tokens is not None:
                        u.reasoning_tokens = d.reasoning_tokens
                elif cls is FinishDelta:
                    self.finished = True
                    if d.reason:
                        self.finish = d.reason
                else:
                    raise TypeError(f"provider yielded an unknown delta {d!r}")
        finally:
            aclose = getattr(deltas, "aclose", None)
            if aclose is not None:
                await aclose()
        if thinking_meta is not None:
            await self._end_thinking(thinking_meta)
        if not self.finished:
            raise ProviderError("the stream ended without the provider's end marker (dropped connection?)")
        out = self.output()
        if out.tool_calls:
            if self.finish in (None, "stop"):
                out.finish_reason = self.finish = "tool_calls"
            for call in out.tool_calls:
                await self._emit(self.ctx.block_meta(), call.to_dict(), EventType.TOOL_CALL)
        return out

    async def _emit(self, meta: dict[str, Any], value: Any, type: str) -> None:
        emitter = self.ctx.emitter
        if emitter is not None:
            await emitter.dispatch(Event(value, type, EventLevel.INFO, meta))

    async def _end_thinking(self, meta: dict[str, Any]) -> None:
        text = "".join(self.thinking_parts[self._think_start :])
        self.thinking_blocks.append(ThinkingBlock(text, self._signature))
        self._signature = None
        await self._emit(meta, "", EventType.THINKING_END)
