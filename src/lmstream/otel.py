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

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind

from ._otel_spans import ModelCall, OpenSpan, Unobserved
from ._version import __version__

__all__ = ["configure", "extract_context", "remote_parent", "observer"]

logger = logging.getLogger("lmstream.otel")

#: ExplicitBucketBoundaries the conventions give for the GenAI client histograms
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

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
    """The `lmstream._observe.Observer` that writes OpenTelemetry spans and metrics (it imports
    nothing of the seam: it matches its protocols)."""

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

    # ----- the seam: a failure here is logged and costs the request nothing but its telemetry
    def request_started(self, request_id: str, kind: str) -> OpenSpan | Unobserved:
        try:
            assert self.inst is not None
            span = self.inst.tracer.start_span(
                f"lmstream.{kind}", kind=SpanKind.INTERNAL, attributes={"lmstream.request_id": request_id}
            )
            return OpenSpan(span, None, self.content())
        except Exception:
            return _failed("request")

    def call_started(
        self, invoker: Any, messages: Sequence[Any], params: Mapping[str, Any], request_id: str | None
    ) -> ModelCall | Unobserved:
        try:
            assert self.inst is not None
            return ModelCall(self.inst, self.content(), invoker, messages, params, request_id)
        except Exception:
            return _failed("model call")

    def tool_started(self, call: Any, tool: Any) -> OpenSpan | Unobserved:
        try:
            return self._tool_started(call, tool)
        except Exception:
            return _failed("tool")

    def _tool_started(self, call: Any, tool: Any) -> OpenSpan:
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
        return OpenSpan(span, (inst.tool_duration, metric_attrs, time.perf_counter()), content)


def _failed(what: str) -> Unobserved:
    logger.warning("lmstream.otel: could not start a %s span; the request goes on untraced", what, exc_info=True)
    return Unobserved()


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
    obs._key = None  # the seam (`lmstream._observe`) finds this same observer, now configured


def extract_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The remote parent carried by incoming headers (W3C `traceparent`/`tracestate`, or
    whatever propagator is configured)."""
    return extract(headers)


def inject_headers() -> dict[str, str]:
    """The current trace context as headers (`traceparent`/`tracestate`), to travel with a job."""
    headers: dict[str, str] = {}
    inject(headers)
    return headers


@contextlib.contextmanager
def remote_parent(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the incoming trace context current while serving one request.

    A no-op when a span is already current (e.g. an ASGI instrumentation's server span, itself
    a child of the caller's): lmstream's spans then nest under it.
    """
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)
