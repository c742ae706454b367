"""OpenTelemetry GenAI spans and metrics for lmstream requests (the `lmstream[otel]` extra).

Nothing to call: with `opentelemetry-api` installed and a tracer or meter provider configured
(globally, or here with `configure()`), every request is traced following the GenAI semantic
conventions (development status):

* `lmstream.process` (INTERNAL): one `process()`/`stream()` request, parent of the spans below;
* `chat {gen_ai.request.model}` (CLIENT; INTERNAL for the embedded model): one model call with
  usage, finish reasons, time to first chunk; retries are `lmstream.retry` span events;
* `execute_tool {gen_ai.tool.name}` (INTERNAL): one tool run of the tool loop;
* metrics `gen_ai.client.operation.duration`, `gen_ai.client.token.usage`,
  `gen_ai.client.operation.time_to_first_chunk`, `gen_ai.client.operation.time_per_output_chunk`
  and `gen_ai.execute_tool.duration`.

Message contents (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
`gen_ai.tool.definitions`, tool arguments and results) are recorded only when opted in:
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` or `configure(capture_content=True)`.
`error.type` is the exception's class name (`RateLimitError`, `StreamInterruptedError`,
`CancelledError` for a cancelled request, ...), or `_OTHER` for a tool error result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import __version__, _observe
from ._otel_content import input_messages, output_messages, provider_name, server_of, tool_definitions
from .errors import LMStreamError, OutputParserError, StreamInterruptedError

__all__ = ["configure", "extract_context", "remote_parent", "observer"]

logger = logging.getLogger("lmstream.otel")

#: ExplicitBucketBoundaries the conventions give for the GenAI client histograms
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

_PARAMS: dict[str, tuple[str, type]] = {  # lmstream hyperparameter -> span attribute and its type
    "max_tokens": ("gen_ai.request.max_tokens", int),
    "temperature": ("gen_ai.request.temperature", float),
    "top_p": ("gen_ai.request.top_p", float),
    "top_k": ("gen_ai.request.top_k", float),
    "seed": ("gen_ai.request.seed", int),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", float),
    "presence_penalty": ("gen_ai.request.presence_penalty", float),
}
_CAPTURE_ON = {"true", "1", "yes", "on", "span_only", "span_and_event"}


def _is_configured(provider: Any, unconfigured: tuple[type, ...]) -> bool:
    return not isinstance(provider, unconfigured)


class _Instruments:
    """Tracer and histograms of one (tracer provider, meter provider) pair."""

    def __init__(self, tp: Any, mp: Any) -> None:
        self.tracer = tp.get_tracer("lmstream", __version__)
        meter = mp.get_meter("lmstream", __version__)

        def hist(name: str, unit: str, desc: str, buckets: list[float] | list[int]) -> Any:
            return meter.create_histogram(
                name, unit=unit, description=desc, explicit_bucket_boundaries_advisory=buckets
            )

        self.duration = hist("gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS)
        self.tokens = hist(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", TOKEN_BUCKETS
        )
        self.ttfc = hist(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk, from when the client issues the request.",
            DURATION_BUCKETS,
        )
        self.tpoc = hist(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time per output chunk after the first one.",
            DURATION_BUCKETS,
        )
        self.tool_duration = hist(
            "gen_ai.execute_tool.duration", "s", "The duration of a single tool execution.", DURATION_BUCKETS
        )


class OTelObserver:
    """The `_observe.Observer` that writes OpenTelemetry spans and metrics."""

    def __init__(self) -> None:
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

        try:  # the API's stand-in until a MeterProvider is set (private name, stable since 1.12)
            from opentelemetry.metrics._internal import _ProxyMeterProvider

            no_meter: tuple[type, ...] = (NoOpMeterProvider, _ProxyMeterProvider)
        except ImportError:  # pragma: no cover - a future API without the proxy class
            no_meter = (NoOpMeterProvider,)
        self._no_tracer: tuple[type, ...] = (NoOpTracerProvider, ProxyTracerProvider)
        self._no_meter = no_meter
        self.tracer_provider: Any = None  # set by configure(); None: the global one
        self.meter_provider: Any = None
        self.capture_content: bool | None = None
        self._key: tuple[Any, Any] | None = None
        self._on = False
        self.inst: _Instruments | None = None

    # ----- configuration, checked once per request (no per-token work anywhere in this module)
    def active(self) -> bool:
        tp = self.tracer_provider or trace.get_tracer_provider()
        mp = self.meter_provider or metrics.get_meter_provider()
        key = (tp, mp)
        if key != self._key:
            self._on = _is_configured(tp, self._no_tracer) or _is_configured(mp, self._no_meter)
            self.inst = _Instruments(tp, mp) if self._on else None
            self._key = key
        return self._on

    def content(self) -> bool:
        if self.capture_content is not None:
            return self.capture_content
        return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in _CAPTURE_ON

    # ----- the seam
    def request_started(self, request_id: str, kind: str) -> _Span:
        assert self.inst is not None
        span = self.inst.tracer.start_span(
            f"lmstream.{kind}", kind=SpanKind.INTERNAL, attributes={"lmstream.request_id": request_id}
        )
        return _Span(span, None, self.content())

    def call_started(
        self, invoker: Any, messages: Sequence[Any], params: Mapping[str, Any], request_id: str | None
    ) -> _Call:
        assert self.inst is not None
        return _Call(self, self.inst, invoker, messages, params, request_id)

    def tool_started(self, call: Any, tool: Any) -> _Span:
        inst = self.inst
        assert inst is not None
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.type": "function",
        }
        if call.id:
            attrs["gen_ai.tool.call.id"] = call.id
        if tool is not None and tool.description:
            attrs["gen_ai.tool.description"] = tool.description
        content = self.content()
        if content:
            from . import _json

            attrs["gen_ai.tool.call.arguments"] = _json.dumps(call.arguments)
        span = inst.tracer.start_span(f"execute_tool {call.name}", kind=SpanKind.INTERNAL, attributes=attrs)
        metric_attrs = {k: attrs[k] for k in ("gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.tool.type")}
        return _Span(span, (inst.tool_duration, metric_attrs, time.perf_counter()), content)


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
        span.set_status(Status(StatusCode.ERROR, str(exc) or etype))
        span.record_exception(exc)
    else:
        span.set_status(Status(StatusCode.ERROR, etype))
        trace_only = "".join(traceback.format_tb(exc.__traceback__))
        span.record_exception(exc, {"exception.message": etype, "exception.stacktrace": trace_only})
    return etype


class _Span:
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


class _Call:
    """One model call: its span (current while it runs) and its metrics."""

    __slots__ = ("acc", "attrs", "content", "inst", "span", "t0", "token")

    def __init__(
        self,
        obs: OTelObserver,
        inst: _Instruments,
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
        if getattr(invoker, "response_schema", None) is not None:
            span_attrs["gen_ai.output.type"] = "json"
        if request_id is not None:
            span_attrs["lmstream.request_id"] = request_id
        self.content = obs.content()
        if self.content:
            from . import _json

            system, history = input_messages(invoker, messages)
            if system:
                span_attrs["gen_ai.system_instructions"] = _json.dumps(system)
            span_attrs["gen_ai.input.messages"] = _json.dumps(history)
            tools = getattr(invoker, "tools", None)
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
            if acc.ttft is not None:
                first_at = acc.ctx.started + acc.ttft
        if acc is not None and acc.response_model:  # the metrics carry it too
            attrs = {**attrs, "gen_ai.response.model": acc.response_model}
        input_tokens = usage.input_tokens if usage is not None else 0
        output_tokens = usage.output_tokens if usage is not None else 0
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
            if chunks > 1:
                inst.tpoc.record((t1 - first_at) / (chunks - 1), attrs)


_OBSERVER: OTelObserver | None = None


def observer() -> OTelObserver:
    """The process-wide observer (created on first use)."""
    global _OBSERVER
    if _OBSERVER is None:
        _OBSERVER = OTelObserver()
    return _OBSERVER


def configure(tracer_provider: Any = None, meter_provider: Any = None, capture_content: bool | None = None) -> None:
    """Use these providers instead of the global ones (None: the global one), and turn message
    content capture on or off (None: from `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`)."""
    obs = observer()
    obs.tracer_provider = tracer_provider
    obs.meter_provider = meter_provider
    obs.capture_content = capture_content
    obs._key = None
    _observe.set_observer(obs)


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The remote parent carried by incoming headers (W3C `traceparent`/`tracestate`, or
    whatever propagator is configured)."""
    return extract(headers)


@contextlib.contextmanager
def remote_parent(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the incoming trace context current while serving one request."""
    token = otel_context.attach(extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)
