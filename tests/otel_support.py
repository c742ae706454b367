"""Test support for tracing: fresh OpenTelemetry SDK providers (in-memory span exporter and
metric reader) wired into `lmstream.otel` for one test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lmstream import LMRequestProcessor, PromptBuilder, otel


class Telemetry:
    """Fresh SDK providers wired into lmstream.otel for one test."""

    def __init__(self) -> None:
        self.spans_exporter = InMemorySpanExporter()
        self.tp = TracerProvider()
        self.tp.add_span_processor(SimpleSpanProcessor(self.spans_exporter))
        self.reader = InMemoryMetricReader()
        self.mp = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def spans(self) -> list[ReadableSpan]:
        return list(self.spans_exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out

    def units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        return {m.name: m.unit for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


@contextlib.contextmanager
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    otel.configure(tracer_provider=t.tp, meter_provider=t.mp, capture_content=False)
    try:
        yield t
    finally:
        otel.configure()  # back to the global providers (none configured in the test process)
        t.tp.shutdown()
        t.mp.shutdown()


def _lmrp(inv: Any, **kw: Any) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{q}"), inv, **kw)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
