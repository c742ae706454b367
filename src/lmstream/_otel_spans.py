"""The spans behind `lmstream.otel`: a request or tool span, and a model call with its metrics.

Everything here runs once per request, model call or tool run; nothing runs per token (the
chunk count and first-chunk time are read from the accumulator when the call ends).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._otel_content import input_messages, output_messages, provider_name, server_of, tool_definitions
from ._redact import redact
from .errors import LMStreamError, OutputParserError, StreamInterruptedError

__all__ = ["ModelCall", "OpenSpan", "Unobserved"]

logger = logging.getLogger("lmstream.otel")

_PARAMS: dict[str, tuple[str, type]] = {  # lmstream hyperparameter -> span attribute and its type
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", float),
    "seed": ("gen_ai.request.seed", int),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", float),
    "presence_penalty": ("gen_ai.request.presence_penalty", float),
}


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def _fail(span: Any, exc: BaseException, content: bool) -> str:
    """Mark a span failed; returns the `error.type`.

    The message is recorded only when it cannot carry prompt or answer text (lmstream's own
    provider, timeout and configuration errors) or when content capture is on: a tool's
    exception or an output-parser error may quote what the model said.
    """
    etype = _error_type(exc)
    span.set_attribute("error.type", etype)
    if isinstance(exc, asyncio.CancelledError):  # a cancel is no fault: no stack trace
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
        return etype
    if content or (isinstance(exc, LMStreamError) and not isinstance(exc, OutputParserError)):
        text = redact(str(exc))  # an upstream's text may echo its key: spans leave the process
        span.set_status(Status(StatusCode.ERROR, text or etype))
        frames = "".join(traceback.format_tb(exc.__traceback__))  # the trace, its last line redacted
        span.record_exception(exc, {"exception.message": text, "exception.stacktrace": f"{frames}{etype}: {text}"})
    else:
        span.set_status(Status(StatusCode.ERROR, etype))
        trace_only = "".join(traceback.format_tb(exc.__traceback__))
        span.record_exception(exc, {"exception.message": etype, "exception.stacktrace": trace_only})
    return etype


#: USD, from genai-prices (no semantic convention names cost yet); absent when no price is known
COST_ATTRIBUTE = "lmstream.usage.cost"


class Unobserved:
    """The handle given when a span could not be started: every report is a no-op."""

    def attempt(self, acc: Any) -> None:
        pass

    def retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        pass

    def end(self, result: Any, exc: BaseException | None) -> None:
        pass


class OpenSpan:
    """A request or tool span, current (attached) from start to end."""

    __slots__ = ("content", "metric", "span", "token")

    def __init__(self, span: Any, metric: tuple[Any, dict[str, Any], float] | None, content: bool | None) -> None:
        self.span = span
        self.metric = metric
        self.content = content
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, result: Any, exc: BaseException | None) -> None:
        try:
            span = self.span
            etype = None
            if exc is not None:
                etype = _fail(span, exc, bool(self.content))
            elif getattr(result, "is_error", False):  # a tool error result sent back to the model
                etype = "_OTHER"
                span.set_attribute("error.type", etype)
                why = str(getattr(result, "output", ""))[:200] if self.content else "tool error"
                span.set_status(Status(StatusCode.ERROR, why))
            cost = getattr(getattr(result, "usage", None), "cost", None)
            if cost is not None:  # a request span: what all its model calls cost
                span.set_attribute(COST_ATTRIBUTE, float(cost))
            cache = getattr(result, "cache", None)
            if isinstance(cache, dict):  # a request behind a response cache: was it served from it
                span.set_attribute("lmstream.cache.hit", bool(cache.get("hit")))
                span.set_attribute("lmstream.cache.joined", bool(cache.get("joined")))
            if self.content and result is not None and hasattr(result, "output"):
                span.set_attribute("gen_ai.tool.call.result", result.output)
            if self.metric is not None:
                hist, attrs, t0 = self.metric
                if etype is not None:
                    attrs = {**attrs, "error.type": etype}
                hist.record(time.perf_counter() - t0, attrs)
        except Exception:  # telemetry never breaks a request
            logger.debug("lmstream.otel: could not finish a span", exc_info=True)
        finally:
            self.span.end()
            otel_context.detach(self.token)


class ModelCall:
    """One model call: its span (current while it runs) and its metrics."""

    __slots__ = ("acc", "attrs", "content", "inst", "span", "t0", "token")

    def __init__(
        self,
        inst: Any,
        content: bool,
        invoker: Any,
        messages: Sequence[Any],
        params: Mapping[str, Any],
        request_id: str | None,
    ) -> None:
        self.inst = inst
        self.acc: Any = None
        provider = provider_name(invoker)
        model = invoker.model_name
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
        }
        host, port = server_of(invoker)
        if host:
            attrs["server.address"] = host
            if port:
                attrs["server.port"] = port
        self.attrs = attrs  # the metric attributes (span attributes add the request details)
        span_attrs = {**attrs, "gen_ai.request.stream": True}
        for name, value in params.items():
            spec = _PARAMS.get(name)
            if spec is not None:
                span_attrs[spec[0]] = spec[1](value)
            elif name == "stop":
                span_attrs["gen_ai.request.stop_sequences"] = [value] if isinstance(value, str) else list(value)
        if getattr(params, "response_schema", None) is not None:  # the call's (`CallParams`)
            span_attrs["gen_ai.output.type"] = "json"
        if request_id is not None:
            span_attrs["lmstream.request_id"] = request_id
        self.content = content
        if self.content:
            from . import _json

            system, history = input_messages(invoker, messages)
            if system:
                span_attrs["gen_ai.system_instructions"] = _json.dumps(system)
            span_attrs["gen_ai.input.messages"] = _json.dumps(history)
            tools = getattr(params, "tools", None)  # the tools this call offers (`CallParams`)
            if tools:
                span_attrs["gen_ai.tool.definitions"] = _json.dumps(tool_definitions(tools))
        kind = SpanKind.INTERNAL if invoker.provider == "local" else SpanKind.CLIENT
        self.span = inst.tracer.start_span(f"chat {model}", kind=kind, attributes=span_attrs)
        self.t0 = time.perf_counter()
        self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def attempt(self, acc: Any) -> None:
        self.acc = acc

    def retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        attrs: dict[str, Any] = {
            "lmstream.retry.attempt": attempt,
            "lmstream.retry.delay": delay,
            "error.type": _error_type(exc),
        }
        status = getattr(exc, "status_code", None)
        if status is not None:
            attrs["http.response.status_code"] = status
        self.span.add_event("lmstream.retry", attrs)

    def end(self, output: Any, exc: BaseException | None) -> None:
        t1 = time.perf_counter()
        try:
            self._finish(output, exc, t1)
        except Exception:  # telemetry never breaks a request
            logger.debug("lmstream.otel: could not finish a model-call span", exc_info=True)
        finally:
            self.span.end()
            otel_context.detach(self.token)

    def _finish(self, output: Any, exc: BaseException | None, t1: float) -> None:
        span, inst, acc = self.span, self.inst, self.acc
        attrs = self.attrs
        if output is None and isinstance(exc, StreamInterruptedError):
            output = exc.partial_output
        usage = output.usage if output is not None else (acc.usage if acc is not None else None)
        chunks, first_at = 0, None
        if acc is not None:
            chunks = len(acc.text_parts) + len(acc.thinking_parts)
            first_at = acc.first_at  # time.perf_counter() at its first content delta
        if acc is not None and acc.response_model:  # the metrics carry it too
            attrs = {**attrs, "gen_ai.response.model": acc.response_model}
        # None (not reported) sets no attribute, as 0 does not
        input_tokens = (usage.input_tokens or 0) if usage is not None else 0
        output_tokens = (usage.output_tokens or 0) if usage is not None else 0
        if exc is not None:
            output_tokens = max(output_tokens, chunks)  # cut short: at least one token per chunk received
        if span.is_recording():
            if input_tokens:
                span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            if output_tokens:
                span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
            if usage is not None and usage.cached_tokens:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
            if usage is not None and usage.reasoning_tokens:
                span.set_attribute("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens)
            if usage is not None and usage.cost is not None:
                span.set_attribute(COST_ATTRIBUTE, float(usage.cost))
            if output is not None and output.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [output.finish_reason])
            if first_at is not None:
                span.set_attribute("gen_ai.response.time_to_first_chunk", first_at - self.t0)
            span.set_attribute("lmstream.response.chunks", chunks)
            if acc is not None and acc.response_id:
                span.set_attribute("gen_ai.response.id", acc.response_id)
            if acc is not None and acc.response_model:
                span.set_attribute("gen_ai.response.model", acc.response_model)
            if self.content and output is not None and exc is None:
                from . import _json

                span.set_attribute("gen_ai.output.messages", _json.dumps(output_messages(output)))
        metric_attrs = attrs
        if exc is not None:
            metric_attrs = {**attrs, "error.type": _fail(span, exc, self.content)}
        inst.duration.record(t1 - self.t0, metric_attrs)
        if input_tokens:
            inst.tokens.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        if output_tokens:
            inst.tokens.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})
        if first_at is not None:
            inst.ttfc.record(first_at - self.t0, attrs)
            if chunks > 1 and exc is None:  # a cut-short call's end is not its last chunk
                inst.tpoc.record((t1 - first_at) / (chunks - 1), attrs)
