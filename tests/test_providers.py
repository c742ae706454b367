"""Every provider through its real client path (official SDK or lmstream's HTTP for Chat
Completions) against a local server replaying that provider's documented wire format.

One parametrised test per capability: the provider table of docs/providers.md is this file.
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from lmstream import (
    Message,
    OutputParserError,
    ProviderError,
    RateLimitError,
    RetryConfig,
    ToolError,
)
from tests.wire import fixtures as fx
from tests.wire.providers import KEY, NAMES, PROVIDERS, STRUCT, TEXT, WEATHER, get_time, get_weather
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import lmrp as _lmrp
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


@pytest.mark.parametrize("name", NAMES)
async def test_streaming_text_and_usage(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        events, out = await _process(_lmrp(_invoker(p, srv)), q="Tokyo?")
        req = srv.requests[0]
    assert req.path == p.path
    responses = [e for e in events if e.type == "response"]
    assert [e.value for e in responses] == list(TEXT)  # one event per wire delta, in order
    assert out.text == "".join(TEXT) and out.finish_reason == "stop"
    assert (out.usage.input_tokens, out.usage.output_tokens) == p.usage
    assert events[-1].type == "done" and events[-1].metadata["usage"]["output_tokens"] == p.usage[1]
    assert out.time_to_first_token is not None
    body = json.dumps(req.json)
    assert "Be brief." in body and "Tokyo?" in body
    assert KEY not in "".join(e.to_json() for e in events)


@pytest.mark.parametrize("name", NAMES)
async def test_thinking_streams_as_thinking_events(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.thinking()))
        events, out = await _process(_lmrp(_invoker(p, srv)), q="2+2?")
    types = [e.type for e in events]
    assert types[0] == "thinking_start"
    assert types.index("thinking_end") < types.index("response")
    thinking = "".join(e.value for e in events if e.type == "thinking")
    assert thinking == out.thinking and out.thinking.replace("*", "").strip()
    assert out.text == "".join(e.value for e in events if e.type == "response")
    ids = {e.metadata["block_id"] for e in events if e.type.startswith("thinking")}
    assert len(ids) == 1 and ids.isdisjoint({e.metadata["block_id"] for e in events if e.type == "response"})


@pytest.mark.parametrize("name", NAMES)
async def test_tool_loop_end_to_end(name):
    """The model asks for two tools at once; both run; the model is called again and answers."""
    p = PROVIDERS[name]
    calls = [("get_weather", WEATHER, "call_a"), ("get_time", {"timezone": "Europe/Paris"}, "call_b")]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.tools(calls)), Script(chunks=p.text(("It is", " sunny."))))
        lmrp = _lmrp(_invoker(p, srv))
        lmrp.set_tools([get_weather, get_time])
        events, out = await _process(lmrp, q="Weather?")
        first, second = srv.requests[0].json, srv.requests[1].json
    assert out.text == "It is sunny."
    tool_calls = [e.value for e in events if e.type == "tool_call"]
    assert [c["name"] for c in tool_calls] == ["get_weather", "get_time"]
    assert tool_calls[0]["arguments"] == WEATHER
    results = {e.value["name"]: e.value["output"] for e in events if e.type == "tool_result"}
    assert results["get_weather"] == {"city": "Paris", "temp": 21}  # the tool's own value, not its text
    assert results["get_time"] == "12:00 in Europe/Paris"
    assert "get_weather" in json.dumps(first) and "city" in json.dumps(first)  # schema sent
    assert "12:00 in Europe/Paris" in json.dumps(second)  # results sent back
    assert [e.type for e in events].count("done") == 1 and events[-1].type == "done"


@pytest.mark.parametrize("name", NAMES)
async def test_raising_tool_is_reported_to_model_and_max_lm_calls(name):
    p = PROVIDERS[name]

    def get_weather(city: str, unit: str = "c") -> str:
        raise RuntimeError("weather service down")

    calls = [("get_weather", WEATHER, "call_a")]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.tools(calls)), Script(chunks=p.text(("Sorry.",))))
        lmrp = _lmrp(_invoker(p, srv))
        lmrp.set_tools([get_weather])
        events, out = await _process(lmrp, q="Weather?")
        assert out.text == "Sorry."
        assert "weather service down" in json.dumps(srv.requests[1].json)
        result = next(e for e in events if e.type == "tool_result")
        assert result.metadata["is_error"] and "RuntimeError" in result.value["output"]

        srv.enqueue(Script(chunks=p.tools(calls)), Script(chunks=p.tools(calls)))
        events, err = await _process(lmrp, q="Weather?", max_lm_calls=2)
    assert isinstance(err, ToolError) and "max_lm_calls=2" in str(err)
    assert events[-1].type == "error"


class Forecast(BaseModel):
    city: str
    temperature_c: int
    tags: list[str]


@pytest.mark.parametrize("name", NAMES)
async def test_structured_output_with_partial_data_events(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.structured(STRUCT)))
        inv = _invoker(p, srv)
        lmrp = _lmrp(inv)
        lmrp.set_response_schema(Forecast)
        events, out = await _process(lmrp, q="Forecast?")
        req = json.dumps(srv.requests[0].json)
    if p.wire == "anthropic":
        schema = json.loads(req)["output_config"]["format"]["schema"]
        assert schema["additionalProperties"] is False and "temperature_c" in schema["properties"]
    assert out.structured_output == Forecast(**STRUCT)
    assert "temperature_c" in req  # the schema went to the provider, in its native field
    native_field = {
        "chat": "response_format",
        "responses": "text",
        "anthropic": "output_config",
        "gemini": "generationConfig",
        "bedrock": "outputConfig",
    }
    assert native_field[p.wire] in json.loads(req)
    data = [e.value for e in events if e.type == "data"]
    assert len(data) >= 3 and data[-1] == STRUCT
    # partial objects only grow: each is a prefix-state of the next
    assert data[0] in ({}, {"city": ""}) or len(json.dumps(data[0])) <= len(json.dumps(data[1]))
    assert any("tags" not in d for d in data) and any(d.get("city") == "Paris" for d in data)


@pytest.mark.parametrize("name", NAMES)
async def test_invalid_structured_output_is_output_parser_error(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.structured({"city": "Paris"})))
        inv = _invoker(
            p,
            srv,
        )
        inv.set_response_schema(Forecast)
        with pytest.raises(OutputParserError) as info:
            await inv.invoke([Message.user("Forecast?")])
    assert '"city"' in info.value.text


@pytest.mark.parametrize("name", NAMES)
async def test_history_is_sent_multi_turn(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(("Ada",))))
        history = [Message.user("My name is Ada."), Message.assistant("Hello Ada!")]
        _, out = await _process(_lmrp(_invoker(p, srv)), q="My name?", history=history)
        body = json.dumps(srv.requests[0].json)
    assert out.text == "Ada"
    assert body.index("My name is Ada.") < body.index("Hello Ada!") < body.index("My name?")


@pytest.mark.parametrize("name", NAMES)
async def test_http_errors_map_to_provider_errors(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(status=400, body=p.error(400)))
        with pytest.raises(ProviderError) as bad:
            await _invoker(p, srv).invoke("hi")
        srv.enqueue(*[Script(status=429, headers={"retry-after": "0"}, body=p.error(429))] * 3)
        inv = _invoker(p, srv, retry_config=RetryConfig(max_retries=2, base_delay=0.01))
        with pytest.raises(RateLimitError) as limited:
            await inv.invoke("hi")
        n_requests = len(srv.requests)
    assert bad.value.status_code == 400 and not isinstance(bad.value, RateLimitError)
    assert limited.value.status_code == 429
    assert n_requests == 1 + 3  # 400 not retried; 429 tried 1 + 2 retries
    assert KEY not in str(bad.value) + str(limited.value) + repr(bad.value)


async def test_anthropic_thinking_blocks_travel_back_signed_in_the_tool_loop():
    """With thinking on, Anthropic requires the signed thinking block before the tool_use."""
    p = PROVIDERS["anthropic"]
    first = fx.anthropic_stream(
        (
            fx.AThinking(("I should", " check."), "sig-abc123"),
            fx.AToolUse("get_weather", json.dumps(WEATHER), id="tu_1"),
        )
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=first), Script(chunks=p.text(("Sunny.",))))
        lmrp = _lmrp(_invoker(p, srv))
        lmrp.set_tools([get_weather])
        events, out = await _process(lmrp, q="Weather?")
        replay = srv.requests[1].json["messages"]
    assert out.text == "Sunny."
    assistant = next(m for m in replay if m["role"] == "assistant")
    assert assistant["content"][0] == {"type": "thinking", "thinking": "I should check.", "signature": "sig-abc123"}
    assert assistant["content"][1]["type"] == "tool_use" and assistant["content"][1]["id"] == "tu_1"
    assert [e.type for e in events][:3] == ["thinking_start", "thinking", "thinking"]


async def test_gemini_thought_signature_travels_back_with_the_function_call():
    p = PROVIDERS["google"]
    signature = "d2lyZS10aG91Z2h0LXNpZ25hdHVyZQ=="  # base64, as the API sends it
    first = fx.gemini_function_call([fx.GeminiCall("get_weather", WEATHER, thought_signature=signature)])
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=first), Script(chunks=p.text(("Sunny.",))))
        lmrp = _lmrp(_invoker(p, srv))
        lmrp.set_tools([get_weather])
        _, out = await _process(lmrp, q="Weather?")
        replay = srv.requests[1].json["contents"]
    assert out.text == "Sunny."
    model_turn = next(c for c in replay if c["role"] == "model")
    call_part = next(part for part in model_turn["parts"] if "functionCall" in part)
    assert call_part["thoughtSignature"] == signature
    assert call_part["functionCall"]["name"] == "get_weather"


async def test_anthropic_prompt_mode_structured_output_for_models_without_native_support():
    p = PROVIDERS["anthropic"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.structured(STRUCT)))
        inv = _invoker(p, srv, structured_output_mode="prompt")
        inv.set_response_schema(Forecast)
        out = await inv.invoke([Message.system("Be brief."), Message.user("Forecast?")])
        req = srv.requests[0].json
    assert out.structured_output == Forecast(**STRUCT)
    assert "output_config" not in req and "temperature_c" in req["system"] and "Be brief." in req["system"]


async def test_anthropic_sampling_parameters_reach_the_wire():
    """anthropic 2.x dropped the sampling keywords from `messages.create`; the API still takes them."""
    p = PROVIDERS["anthropic"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        hyper = {"temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 50, "stop": "END"}
        _events, out = await _process(_lmrp(_invoker(p, srv)), q="Tokyo?", hyperparameters=hyper)
        body = srv.requests[0].json
    assert out.text == "".join(TEXT)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 40)
    assert body["max_tokens"] == 50 and body["stop_sequences"] == ["END"]
