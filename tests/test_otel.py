"""OpenTelemetry GenAI spans and metrics, read back through the SDK's in-memory exporter and
metric reader, for real requests through the providers' wire paths (tests/wire/server.py).

Attribute names and values are those of the GenAI semantic conventions (development status):
`chat {model}` CLIENT spans, `execute_tool {name}` spans, the client metrics and their buckets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from lmstream import otel
from tests.otel_support import Telemetry, _attrs, _lmrp
from tests.wire.providers import NAMES, PROVIDERS, TEXT, WEATHER, get_time, get_weather
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
PROVIDER_NAME = {  # lmstream provider -> gen_ai.provider.name (well-known values where one applies)
    "openai-chat": "openai",
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "azure-openai": "azure.ai.openai",
    "azure-openai-responses": "azure.ai.openai",
    "xai": "x_ai",
    "ollama": "ollama",
    "litellm": "openai",  # litellm/openai/...: LiteLLM routes it to OpenAI
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
}
MODEL = {name: p.model_id.split("/", 1)[1] for name, p in PROVIDERS.items()}
CHAT_RESPONSE = ("chatcmpl-wire0001", "gpt-4o-mini-2024-07-18")
RESPONSES_RESPONSE = ("resp_wire0001", "gpt-4.1-mini-2025-04-14")
RESPONSE = {  # (gen_ai.response.id, gen_ai.response.model) as each provider's wire fixture sends them
    "openai-chat": CHAT_RESPONSE,
    "openai": RESPONSES_RESPONSE,
    "anthropic": ("msg_wire014p7gG3wDgGV9EUtLvnow3U", "claude-haiku-4-5-20251001"),
    "google": ("wireRespId0001", "gemini-2.5-flash"),
    "azure-openai": CHAT_RESPONSE,
    "azure-openai-responses": RESPONSES_RESPONSE,
    "xai": CHAT_RESPONSE,
    "ollama": CHAT_RESPONSE,
    "vertex": ("wireRespId0001", "gemini-2.5-flash"),
}


# =========================================================================== a streamed answer


@pytest.mark.parametrize("name", NAMES)
async def test_streamed_answer_spans_and_metrics(tel: Telemetry, name: str) -> None:
    p = PROVIDERS[name]
    params: dict[str, Any] = {"max_tokens": 50}
    extra: dict[str, Any] = {}
    if name == "openai-chat":  # the one API here that takes every sampling parameter
        params.update(temperature=1, top_p=0.9, stop=["\n\n"], seed=7)
        extra = {
            "gen_ai.request.temperature": 1.0,  # a double, though given as an int
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.stop_sequences": ("\n\n",),
            "gen_ai.request.seed": 7,
        }
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT), delay_between=0.005))
        inv = _invoker(p, srv)
        events, out = await _process(_lmrp(inv), q="Tokyo?", hyperparameters=params)
        await inv.aclose()
        port = srv.port
    assert out.text == "".join(TEXT)
    model = MODEL[name]
    parent = tel.span("lmstream.process")
    chat = tel.span(f"chat {model}")
    assert len(tel.spans()) == 2
    assert chat.kind == SpanKind.CLIENT and parent.kind == SpanKind.INTERNAL
    assert chat.parent is not None and chat.parent.span_id == parent.context.span_id
    assert chat.context.trace_id == parent.context.trace_id
    a = _attrs(chat)
    ttfc = a.pop("gen_ai.response.time_to_first_chunk")
    cost = {} if out.usage.cost is None else {"lmstream.usage.cost": float(out.usage.cost)}  # USD, when priced
    response = {}  # where the provider's stream names them (adapters over other libraries do not)
    if name in RESPONSE:
        response = {"gen_ai.response.id": RESPONSE[name][0], "gen_ai.response.model": RESPONSE[name][1]}
    assert a == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER_NAME[name],
        "gen_ai.request.model": model,
        "gen_ai.request.stream": True,
        "gen_ai.request.max_tokens": 50,
        **extra,
        "gen_ai.response.finish_reasons": ("stop",),
        **response,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": len(TEXT),
        "server.address": "127.0.0.1",
        "server.port": port,
        "lmstream.request_id": events[-1].metadata["request_id"],
        "lmstream.response.chunks": len(TEXT),
        **cost,
    }
    assert all(type(a[k]) is float for k in ("gen_ai.request.temperature", "gen_ai.request.top_p") if k in a)
    duration = (chat.end_time - chat.start_time) / 1e9  # type: ignore[operator]
    assert 0 < ttfc < duration
    assert chat.status.status_code == StatusCode.UNSET and not chat.events
    assert _attrs(parent) == {"lmstream.request_id": events[-1].metadata["request_id"], **cost}

    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER_NAME[name],
        "gen_ai.request.model": model,
        "server.address": "127.0.0.1",
        "server.port": port,
        **{k: v for k, v in response.items() if k == "gen_ai.response.model"},
    }
    (d,) = tel.points("gen_ai.client.operation.duration")
    assert dict(d.attributes) == base and d.count == 1 and tuple(d.explicit_bounds) == DURATION_BUCKETS
    assert abs(d.sum - duration) < 0.05
    usage = {dict(pt.attributes)["gen_ai.token.type"]: pt for pt in tel.points("gen_ai.client.token.usage")}
    assert set(usage) == {"input", "output"}
    assert usage["input"].sum == 11 and usage["output"].sum == len(TEXT)
    assert dict(usage["output"].attributes) == {**base, "gen_ai.token.type": "output"}
    assert tuple(usage["input"].explicit_bounds) == TOKEN_BUCKETS
    (first,) = tel.points("gen_ai.client.operation.time_to_first_chunk")
    assert dict(first.attributes) == base and first.count == 1 and first.sum == pytest.approx(ttfc)
    (per,) = tel.points("gen_ai.client.operation.time_per_output_chunk")
    assert dict(per.attributes) == base and per.count == 1 and 0 < per.sum < duration
    assert tuple(per.explicit_bounds) == DURATION_BUCKETS
    assert tel.units() == {
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.token.usage": "{token}",
        "gen_ai.client.operation.time_to_first_chunk": "s",
        "gen_ai.client.operation.time_per_output_chunk": "s",
    }


async def test_message_content_only_on_opt_in(tel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    p = PROVIDERS["anthropic"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)), Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        lmrp = _lmrp(inv, tools=[get_weather])
        await _process(lmrp, q="Tokyo?")  # not opted in
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        otel.configure(tracer_provider=tel.tp, meter_provider=tel.mp)  # capture_content from the environment
        await _process(lmrp, q="Tokyo?")
        await inv.aclose()
    plain, captured = (s for s in tel.spans() if s.name.startswith("chat "))
    content_keys = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
    }
    assert not content_keys & set(_attrs(plain))
    a = _attrs(captured)
    assert json.loads(a["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Tokyo?"}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "".join(TEXT)}], "finish_reason": "stop"}
    ]
    (tool_def,) = json.loads(a["gen_ai.tool.definitions"])
    assert tool_def["type"] == "function" and tool_def["name"] == "get_weather"
    assert tool_def["parameters"]["required"] == ["city"]


# =========================================================================== a tool loop


def broken_tool(x: str) -> str:
    """Always fails."""
    raise ValueError(f"no luck with {x}")


async def test_tool_loop_spans(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]
    calls = [
        ("get_weather", WEATHER, "call_a"),
        ("get_time", {"timezone": "Europe/Paris"}, "call_b"),
        ("broken_tool", {"x": "SECRET-7f3a"}, "call_c"),
        ("no_such_tool", {}, "call_d"),
    ]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.tools(calls)), Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        _events, out = await _process(_lmrp(inv, tools=[get_weather, get_time, broken_tool]), q="Paris?")
        await inv.aclose()
    assert out.text == "".join(TEXT)
    parent = tel.span("lmstream.process")
    chats = sorted((s for s in tel.spans() if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_time or 0)
    tools = {s.name: s for s in tel.spans() if s.name.startswith("execute_tool ")}
    assert len(chats) == 2 and len(tel.spans()) == 1 + 2 + 4
    assert set(tools) == {f"execute_tool {n}" for n, _, _ in calls}
    for s in [*chats, *tools.values()]:
        assert s.parent is not None and s.parent.span_id == parent.context.span_id
    assert _attrs(chats[0])["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert _attrs(chats[1])["gen_ai.response.finish_reasons"] == ("stop",)
    for t in tools.values():  # tools run after the first call ended and before the second began
        assert chats[0].end_time <= t.start_time and t.end_time <= chats[1].start_time  # type: ignore[operator]
        assert t.kind == SpanKind.INTERNAL
    w = tools["execute_tool get_weather"]
    assert _attrs(w) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "call_a",
        "gen_ai.tool.description": "Current weather for a city.",
    }
    assert w.status.status_code == StatusCode.UNSET
    broken = tools["execute_tool broken_tool"]
    assert _attrs(broken)["error.type"] == "ValueError" and broken.status.status_code == StatusCode.ERROR
    (exc_event,) = broken.events
    assert exc_event.name == "exception" and dict(exc_event.attributes or {})["exception.type"] == "ValueError"
    everything = json.dumps([s.to_json() for s in tel.spans()])
    assert "SECRET-7f3a" not in everything  # a tool's message may quote the model: recorded on opt-in only
    missing = tools["execute_tool no_such_tool"]
    assert _attrs(missing)["error.type"] == "_OTHER" and missing.status.status_code == StatusCode.ERROR
    durations = tel.points("gen_ai.execute_tool.duration")
    assert len(durations) == 4 and sum(pt.count for pt in durations) == 4
    assert sum(pt.count for pt in tel.points("gen_ai.client.operation.duration")) == 2


async def test_tool_arguments_and_results_on_opt_in(tel: Telemetry) -> None:
    otel.configure(tracer_provider=tel.tp, meter_provider=tel.mp, capture_content=True)
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        calls = [("get_weather", WEATHER, "call_a"), ("broken_tool", {"x": "SECRET-7f3a"}, "call_b")]
        srv.enqueue(Script(chunks=p.tools(calls)), Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        await _process(_lmrp(inv, tools=[get_weather, broken_tool]), q="Paris?")
        await inv.aclose()
    a = _attrs(tel.span("execute_tool get_weather"))
    assert json.loads(a["gen_ai.tool.call.arguments"]) == WEATHER
    broken = tel.span("execute_tool broken_tool")
    assert broken.status.description == "no luck with SECRET-7f3a"
    assert dict(broken.events[0].attributes or {})["exception.message"] == "no luck with SECRET-7f3a"
    assert json.loads(a["gen_ai.tool.call.result"]) == {"city": "Paris", "temp": 21}
    second = [s for s in tel.spans() if s.name.startswith("chat ")][-1]
    history = json.loads(_attrs(second)["gen_ai.input.messages"])
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool"]
    assert history[2]["parts"] == [
        {"type": "tool_call", "id": "call_a", "name": "get_weather", "arguments": WEATHER},
        {"type": "tool_call", "id": "call_b", "name": "broken_tool", "arguments": {"x": "SECRET-7f3a"}},
    ]
    assert history[3]["parts"] == [
        {"type": "tool_call_response", "id": "call_a", "response": '{"city":"Paris","temp":21}'},
        {"type": "tool_call_response", "id": "call_b", "response": "Error: ValueError: no luck with SECRET-7f3a"},
    ]
