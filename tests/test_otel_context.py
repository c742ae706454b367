"""OpenTelemetry around the request: the caller's trace context (W3C `traceparent`), the
standalone `invoke()`, provider names, no import and no work when unused, the docs' example (docs/tracing.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lmstream import _observe, otel
from tests.otel_support import Telemetry, _attrs, _lmrp, telemetry
from tests.wire.providers import PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    with telemetry() as t:
        yield t


async def test_incoming_traceparent_is_the_parent(tel: Telemetry) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        with _observe.remote_parent(headers):  # as a server does: the request's task starts inside
            task = asyncio.create_task(_process(_lmrp(inv), q="x"))
        await task
        await inv.aclose()
    parent = tel.span("lmstream.process")
    assert format(parent.context.trace_id, "032x") == trace_id
    assert parent.parent is not None and format(parent.parent.span_id, "016x") == parent_id
    assert parent.parent.is_remote
    ctx = otel.extract_context(headers)
    from opentelemetry import trace

    assert format(trace.get_current_span(ctx).get_span_context().trace_id, "032x") == trace_id


def test_no_provider_means_no_observer() -> None:
    otel.configure()  # the global providers: none is set in the test process
    assert _observe.current() is None


def test_import_lmstream_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, lmstream, lmstream._observe as o\n"
        "assert o.current() is None\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_PYTHON_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_standalone_invoke_has_no_parent_span(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]

    async def go() -> None:
        async with WireServer() as srv:
            srv.enqueue(Script(chunks=p.text(TEXT)))
            inv = _invoker(p, srv)
            await inv.invoke("hi")
            await inv.aclose()

    asyncio.run(go())
    (chat,) = tel.spans()
    assert chat.name == "chat gpt-4o-mini" and chat.parent is None
    assert _attrs(chat)["lmstream.request_id"].startswith("req_")


def test_provider_names_follow_the_conventions() -> None:
    from lmstream import build_lm_invoker
    from lmstream._otel_content import provider_name, server_of

    def inv(model_id: str, base_url: str | None = None) -> Any:
        return build_lm_invoker(model_id, credentials="k", config={"base_url": base_url} if base_url else None)

    assert provider_name(inv("openai/gpt-4.1")) == "openai"
    assert server_of(inv("openai/gpt-4.1")) == ("api.openai.com", 443)
    assert provider_name(inv("anthropic/claude-haiku-4-5")) == "anthropic"
    assert server_of(inv("anthropic/claude-haiku-4-5")) == ("api.anthropic.com", 443)
    assert provider_name(inv("google/gemini-2.5-flash")) == "gcp.gemini"
    assert provider_name(inv("openai-compatible/deepseek-chat", "https://api.deepseek.com/v1")) == "deepseek"
    assert provider_name(inv("openai-compatible/llama-3.3-70b", "https://api.groq.com/openai/v1")) == "groq"
    assert provider_name(inv("openai-compatible/qwen", "http://127.0.0.1:8000/v1")) == "openai"
    assert server_of(inv("openai-compatible/qwen", "http://127.0.0.1:8000/v1")) == ("127.0.0.1", 8000)
    azure = build_lm_invoker(
        "azure-openai/my-deployment", credentials="k", config={"base_url": "https://res.openai.azure.com"}
    )
    assert provider_name(azure) == "azure.ai.openai" and server_of(azure) == ("res.openai.azure.com", 443)
    assert provider_name(inv("xai/grok-4")) == "x_ai"
    vertex = build_lm_invoker(
        "google/gemini-2.5-flash",
        credentials="k",
        config={"vertexai": True, "project": "p", "location": "europe-west4"},
    )
    assert provider_name(vertex) == "gcp.vertex_ai"
    assert server_of(vertex) == ("europe-west4-aiplatform.googleapis.com", 443)
    assert provider_name(inv("litellm/anthropic/claude-haiku-4-5")) == "anthropic"


def test_tracing_example_prints_the_spans() -> None:
    """The tracing example (examples/tracing.py) on the embedded model: the console shows GenAI spans, metrics."""
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "tracing.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert '"name": "chat smollm2-135m"' in out and '"kind": "SpanKind.INTERNAL"' in out
    assert '"gen_ai.provider.name": "llama_cpp"' in out and '"name": "lmstream.process"' in out
    for metric in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        assert f'"name": "{metric}"' in out


async def test_a_tracing_failure_never_breaks_the_request(
    tel: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import lmstream._otel_spans as spans

    def broken(invoker: Any) -> str:
        raise RuntimeError("provider lookup failed")

    monkeypatch.setattr(spans, "provider_name", broken)
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        _events, out = await _process(_lmrp(inv), q="x")
        await inv.aclose()
    assert out.text == "".join(TEXT)
    assert [s.name for s in tel.spans()] == ["lmstream.process"]  # the model call went untraced, not failed
    assert "could not start a model call span" in caplog.text


async def test_stream_request_and_early_close(tel: Telemetry) -> None:
    """`lmrp.stream()` is an `lmstream.stream` span; leaving the stream early ends it as cancelled."""
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)), Script(chunks=p.text(TEXT), stall_after=3))
        inv = _invoker(p, srv)
        lmrp = _lmrp(inv)
        async with lmrp.stream(q="x") as s:
            text = [t async for t in s.text()]
        assert "".join(text) == "".join(TEXT)
        async with lmrp.stream(q="x") as s:
            async for ev in s:
                if ev.type == "response":
                    break  # leaving the block closes the stream: the request is cancelled
        await inv.aclose()
    done, closed = sorted((x for x in tel.spans() if x.name == "lmstream.stream"), key=lambda x: x.start_time or 0)
    assert "error.type" not in _attrs(done)
    assert _attrs(closed)["error.type"] == "CancelledError"
    chats = [x for x in tel.spans() if x.name == "chat gpt-4o-mini"]
    assert {c.parent.span_id for c in chats if c.parent} == {done.context.span_id, closed.context.span_id}


async def test_metrics_without_tracing(tel: Telemetry) -> None:
    """A meter provider alone turns the metrics on; with no tracer provider no span is made."""
    otel.configure(meter_provider=tel.mp)
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        await _process(_lmrp(inv), q="x")
        await inv.aclose()
    assert tel.spans() == []
    (d,) = tel.points("gen_ai.client.operation.duration")
    assert d.count == 1 and dict(d.attributes)["gen_ai.provider.name"] == "openai"
    assert sum(pt.sum for pt in tel.points("gen_ai.client.token.usage")) == 11 + len(TEXT)


async def test_remote_parent_leaves_a_current_span_alone(tel: Telemetry) -> None:
    """Under an ASGI instrumentation's server span (already the caller's child) lmstream nests
    under that span rather than jumping to the remote parent."""
    headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        with tel.tp.get_tracer("asgi").start_as_current_span("POST /v1/stream") as server_span:
            with _observe.remote_parent(headers):
                await _process(_lmrp(inv), q="x")
        await inv.aclose()
    parent = tel.span("lmstream.process")
    assert parent.parent is not None and parent.parent.span_id == server_span.get_span_context().span_id
