"""Tracing: OpenTelemetry GenAI spans and metrics of a request, printed by console exporters.

Needs `pip install "lmstream[otel]" opentelemetry-sdk`. In production, swap the console
exporters for OTLP ones (opentelemetry-exporter-otlp) pointing at your collector.
"""

import asyncio

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from lmstream import EventEmitter, build_lm_request_processor

tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(tracer_provider)
meter_provider = MeterProvider([PeriodicExportingMetricReader(ConsoleMetricExporter())])
metrics.set_meter_provider(meter_provider)


async def main() -> None:
    lmrp = build_lm_request_processor("local/smollm2-135m", user_template="{question}")
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        lmrp.process(question="Name a river.", hyperparameters={"max_tokens": 16}, event_emitter=emitter)
    )
    async for event in emitter.stream(types="response"):
        print(event.value, end="", flush=True)
    print()
    await task
    await emitter.close()


if __name__ == "__main__":
    asyncio.run(main())
    meter_provider.shutdown()  # flushes the metrics to the console
    tracer_provider.shutdown()
