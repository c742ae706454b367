"""The OpenAI-compatible routes through the official `openai` SDK (sync and async), over real
uvicorn, upstream = the wire replay server through `openai-compatible/`.

What a client of these routes relies on: streamed text, reasoning and usage; the sampling fields
reaching the model; errors in OpenAI's shape with the status codes the SDK maps to its typed
exceptions; a failure mid-stream raised by the SDK (never a `[DONE]` after it); the client
leaving closes the upstream at once; client tools as `tool_calls` deltas and a round trip.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from lmstream import RetryConfig
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

WORDS = tuple(f" w{i}" for i in range(40))
MODEL = "openai-compatible/wire-model"


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


def client(app: ServedApp, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=10)


def aclient(app: ServedApp, key: str = "none") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{app.url}/v1", api_key=key, max_retries=0, timeout=10)


def run_async(coro: Any) -> Any:
    """The async SDK on a loop of its own (the server runs on another thread's loop)."""
    return asyncio.run(coro)


HI = [{"role": "user", "content": "Hi"}]


# --------------------------------------------------------------------------- streams


def test_stream_text_reasoning_usage_and_the_extension_field(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello", ",", " world"), reasoning_deltas=("Let me", " think"))))
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        chunks = list(
            c.chat.completions.create(model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True})
        )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    reasoning = "".join(getattr(ch.choices[0].delta, "reasoning_content", None) or "" for ch in chunks if ch.choices)
    assert text == "Hello, world"
    assert reasoning == "Let me think"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (12, 5, 17)
    assert all(ch.usage is None for ch in chunks[:-1])  # as OpenAI sends them with include_usage
    ext = last.model_extra["lmstream"]
    assert set(ext) >= {"cost", "cache", "duration", "time_to_first_token"}
    assert len({ch.id for ch in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == MODEL and chunks[0].object == "chat.completion.chunk"


def test_stream_without_include_usage_sends_no_usage_chunk_and_ends_with_done(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("a", "b"))))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as h:
        r = h.post(f"{app.url}/v1/chat/completions", json={"model": MODEL, "messages": HI, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    datas = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(ch["choices"] for ch in chunks)
    assert "usage" not in chunks[0]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_not_streaming_sync_and_async_with_usage_and_reasoning(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello", " there"), reasoning_deltas=("hm",))))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Second",), finish_reason="length")))
    with ServedApp(wire_processor(wire)) as app:
        with client(app) as c:
            out = c.chat.completions.create(model=MODEL, messages=HI)

        async def second() -> Any:
            async with aclient(app) as ac:
                return await ac.chat.completions.create(model=MODEL, messages=HI, max_tokens=3)

        out2 = run_async(second())
    assert out.object == "chat.completion"
    assert out.choices[0].message.content == "Hello there"
    assert out.choices[0].message.model_extra["reasoning_content"] == "hm"
    assert out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (12, 5)
    assert out2.choices[0].message.content == "Second"
    assert out2.choices[0].finish_reason == "length"  # truthful: the model ran out of tokens


def test_async_stream_with_the_sdk(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("x", "y", "z"))))
    with ServedApp(wire_processor(wire)) as app:

        async def go() -> list[str]:
            async with aclient(app) as ac:
                stream = await ac.chat.completions.create(model=MODEL, messages=HI, stream=True)
                return [ch.choices[0].delta.content or "" async for ch in stream if ch.choices]

        assert "".join(run_async(go())) == "xyz"


def test_sampling_fields_reach_the_model_under_its_names(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))))
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "Be brief."}, *HI],
            max_completion_tokens=7,
            temperature=0.3,
            top_p=0.9,
            stop=["END"],
            seed=42,
            user="u-1",
        )
    sent = wire.requests[0].json
    assert sent["max_tokens"] == 7 or sent.get("max_completion_tokens") == 7
    assert (sent["temperature"], sent["top_p"], sent["seed"]) == (0.3, 0.9, 42)
    assert sent["stop"] == ["END"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][0]["content"] == "Be brief."


# --------------------------------------------------------------------------- errors


def test_errors_are_the_sdks_typed_exceptions(wire):
    with ServedApp(wire_processor(wire), api_key="k1", max_body_bytes=2000) as app:
        with client(app, key="wrong") as c, pytest.raises(openai.AuthenticationError) as e401:
            c.chat.completions.create(model=MODEL, messages=HI)
        with client(app, key="k1") as c:
            with pytest.raises(openai.NotFoundError) as e404:
                c.chat.completions.create(model="gpt-4o", messages=HI)
            with pytest.raises(openai.BadRequestError) as e400:
                c.chat.completions.create(model=MODEL, messages=HI, n=2)
            with pytest.raises(openai.BadRequestError) as e400b:
                c.chat.completions.create(model=MODEL, messages=HI, max_tokens=0)
            with pytest.raises(openai.APIStatusError) as e413:
                c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 5000}])
        with httpx.Client(timeout=5) as h:
            r415 = h.post(
                f"{app.url}/v1/chat/completions",
                content=b"{}",
                headers={"authorization": "Bearer k1", "content-type": "text/plain"},
            )
    assert e401.value.status_code == 401
    assert e404.value.status_code == 404 and e404.value.code == "model_not_found"
    assert e404.value.body["param"] == "model"
    assert e400.value.param == "n"
    assert e400b.value.param == "max_tokens"
    assert e413.value.status_code == 413
    assert r415.status_code == 415 and set(r415.json()["error"]) == {"message", "type", "param", "code"}
    assert wire.requests == []  # nothing reached the model


def test_busy_server_is_a_429_with_retry_after(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.05))
    with ServedApp(wire_processor(wire), max_concurrent=1) as app, client(app) as c:
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True)
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model=MODEL, messages=HI)
        assert e.value.response.headers["retry-after"] == "1"
        stream.close()
        assert app.idle()


def test_upstream_failure_mid_stream_is_raised_by_the_sdk_and_no_done_follows(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), drop_after=5))
    with ServedApp(wire_processor(wire)) as app:
        with client(app) as c, pytest.raises(openai.APIError) as e:
            for _ in c.chat.completions.create(model=MODEL, messages=HI, stream=True):
                pass
        assert "StreamInterruptedError" in str(e.value.message)
        assert app.idle()
        wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), drop_after=5))
        with httpx.Client(timeout=10) as h:
            body = {"model": MODEL, "messages": HI, "stream": True}
            raw = h.post(f"{app.url}/v1/chat/completions", json=body).text
    assert "[DONE]" not in raw
    assert '"finish_reason":"stop"' not in raw
    last = json.loads([line for line in raw.splitlines() if line.startswith("data: ")][-1][6:])
    assert set(last) == {"error"} and last["error"]["code"] == "upstream_error"
    assert "127.0.0.1" not in raw and wire.base_url not in raw  # no internal address goes out


def test_upstream_failure_before_any_token_not_streaming_is_an_http_error(wire):
    slow = {"error": {"message": "slow down", "type": "rate_limit"}}
    wire.enqueue(Script(status=429, body=slow, headers={"retry-after": "0"}))
    proc = wire_processor(wire, retry_config=RetryConfig(max_retries=0))
    with ServedApp(proc) as app, client(app) as c, pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model=MODEL, messages=HI)
    assert e.value.response.headers["retry-after"] == "1"


def test_a_stream_that_fails_before_its_first_token_is_an_http_status_the_sdk_maps(wire):
    slow = {"error": {"message": "slow down", "type": "rate_limit"}}
    wire.enqueue(Script(status=429, body=slow, headers={"retry-after": "0"}))
    wire.enqueue(Script(status=500, body={"error": {"message": "boom at http://10.1.2.3", "type": "server_error"}}))
    proc = wire_processor(wire, retry_config=RetryConfig(max_retries=0))
    with ServedApp(proc) as app, client(app) as c:
        with pytest.raises(openai.RateLimitError) as e429:
            list(c.chat.completions.create(model=MODEL, messages=HI, stream=True))
        with pytest.raises(openai.InternalServerError) as e5xx:
            list(c.responses.create(model=MODEL, input="Hi", stream=True))
        assert app.idle()
    assert e429.value.response.headers["retry-after"] == "1"
    assert e5xx.value.status_code == 502 and "10.1.2.3" not in e5xx.value.message


# --------------------------------------------------------------------------- disconnect


def test_client_leaving_a_stream_before_its_first_token_closes_the_upstream_within_1s(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_first=10))
    with ServedApp(wire_processor(wire)) as app:
        c = openai.OpenAI(base_url=f"{app.url}/v1", api_key="none", max_retries=0, timeout=1.0)
        with c, pytest.raises(openai.APITimeoutError):
            list(c.chat.completions.create(model=MODEL, messages=HI, stream=True))
        t0 = time.monotonic()
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open after 1 s"
        assert time.monotonic() - t0 < 1.0
        assert app.idle()


def test_client_leaving_mid_stream_closes_the_upstream_within_1s(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.1))
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True)
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        t0 = time.monotonic()
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open after 1 s"
        assert time.monotonic() - t0 < 1.0
        assert app.idle()


def test_client_leaving_a_non_streaming_request_closes_the_upstream_within_1s(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_first=10))
    with ServedApp(wire_processor(wire)) as app:
        done = threading.Event()

        def call() -> None:
            with contextlib_suppress(), client(app) as c:
                c.with_options(timeout=1.0).chat.completions.create(model=MODEL, messages=HI)
            done.set()

        t = threading.Thread(target=call)
        t.start()
        assert wire.wait_for_sync(lambda s: len(s.requests) == 1, 5)
        t.join(5)  # the client gives up after 1 s
        t0 = time.monotonic()
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open after 1 s"
        assert time.monotonic() - t0 < 1.0
        assert app.idle()


def contextlib_suppress() -> Any:
    import contextlib

    return contextlib.suppress(openai.APITimeoutError, openai.APIConnectionError)


# --------------------------------------------------------------------------- models


def test_models_lists_the_served_names_and_only_those_are_accepted(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))))
    with ServedApp(wire_processor(wire), served_model_names=["smol", "tiny"]) as app, client(app) as c:
        assert [m.id for m in c.models.list()] == ["smol", "tiny"]
        assert c.models.retrieve("tiny").id == "tiny"
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve(MODEL)
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model=MODEL, messages=HI)
        assert c.chat.completions.create(model="tiny", messages=HI).model == "tiny"


# --------------------------------------------------------------------------- tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_client_tools_need_the_operators_flag(wire):
    with ServedApp(wire_processor(wire)) as app, client(app) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER])
    assert "--allow-client-tools" in e.value.message
    assert e.value.param == "tools"
    assert wire.requests == []


def test_tool_round_trip_with_the_sdk(wire):
    call = fx.ToolCall("get_weather", '{"city": "Paris"}', id="call_1", fragment=5)
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls([call])))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("It is", " sunny"))))
    with ServedApp(wire_processor(wire), allow_client_tools=True) as app, client(app) as c:
        msgs: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        chunks = list(c.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], stream=True))
        deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
        assert deltas[0].id == "call_1" and deltas[0].function.name == "get_weather"
        args = "".join(d.function.arguments or "" for d in deltas)
        assert json.loads(args) == {"city": "Paris"}
        assert len([d for d in deltas if d.function.arguments]) > 1  # streamed in fragments
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
        msgs += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
        ]
        out = c.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER])
    assert out.choices[0].message.content == "It is sunny"
    first, second = wire.requests[0].json, wire.requests[1].json
    assert first["tools"][0]["function"]["name"] == "get_weather"
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["user", "assistant", "tool"]
    assert second["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][2]["tool_call_id"] == "call_1"
    assert second["messages"][2]["content"] == '{"sky": "sunny"}'


def test_tool_choice_none_sends_no_tools_and_a_forced_choice_passes_through(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("a",))))
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls()))
    with ServedApp(wire_processor(wire), allow_client_tools=True) as app, client(app) as c:
        c.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER], tool_choice="none")
        forced = {"type": "function", "function": {"name": "get_weather"}}
        out = c.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER], tool_choice=forced)
    assert "tools" not in wire.requests[0].json
    assert wire.requests[1].json["tool_choice"] == forced
    assert out.choices[0].finish_reason == "tool_calls"
    assert out.choices[0].message.tool_calls


def test_client_tools_of_one_request_never_reach_another(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls()))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("plain",))))
    with ServedApp(wire_processor(wire), allow_client_tools=True) as app, client(app) as c:
        c.chat.completions.create(model=MODEL, messages=HI, tools=[WEATHER])
        c.chat.completions.create(model=MODEL, messages=HI)
        assert app.processor.lm_invoker.tools == []
    assert "tools" in wire.requests[0].json and "tools" not in wire.requests[1].json


# --------------------------------------------------------------------------- responses


def test_responses_stream_through_the_sdk(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello", " you"))))
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        events = list(c.responses.create(model=MODEL, input="Hi", stream=True, instructions="Be kind."))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello you"
    done = events[-1].response
    assert done.status == "completed"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (12, 5)
    assert done.output[0].content[0].text == "Hello you"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert wire.requests[0].json["messages"][0] == {"role": "system", "content": "Be kind."}


def test_responses_function_call_arguments_stream(wire):
    call = fx.ToolCall("get_weather", '{"city": "Oslo"}', id="call_9", fragment=4)
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls([call])))
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    with ServedApp(wire_processor(wire), allow_client_tools=True) as app, client(app) as c:
        events = list(c.responses.create(model=MODEL, input="Weather?", tools=[tool], stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Oslo"}
    item = events[-1].response.output[0]
    assert (item.type, item.call_id, item.name) == ("function_call", "call_9", "get_weather")


def test_responses_failure_mid_stream_is_raised(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), drop_after=5))
    with ServedApp(wire_processor(wire)) as app, client(app) as c, pytest.raises(openai.APIError):
        for _ in c.responses.create(model=MODEL, input="Hi", stream=True):
            pass


def test_responses_not_streaming(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Yes",))))
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        out = c.responses.create(model=MODEL, input=[{"role": "user", "content": "Hi"}])
    assert out.output_text == "Yes"
    assert out.status == "completed"


# --------------------------------------------------------------------------- cost and cache


def test_cache_status_in_the_extension_field_and_headers_and_no_cache_bypasses_it(wire):
    from lmstream import ResponseCache

    wire.enqueue(Script(chunks=fx.openai_chat_text(("cached", " answer"))))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("fresh",))))
    proc = wire_processor(wire)
    proc.cache = ResponseCache()
    with ServedApp(proc) as app, client(app) as c:
        ask = {"model": MODEL, "messages": HI, "temperature": 0}
        first = c.chat.completions.with_raw_response.create(**ask)
        second = c.chat.completions.with_raw_response.create(**ask)
        chunks = list(c.chat.completions.create(**ask, stream=True))
        fresh = c.chat.completions.with_raw_response.create(**ask, extra_headers={"cache-control": "no-cache"})
    assert first.headers["x-lmstream-cache"] == "miss" and second.headers["x-lmstream-cache"] == "hit"
    assert second.parse().choices[0].message.content == "cached answer"
    assert second.parse().model_extra["lmstream"]["cache"]["hit"] is True
    assert chunks[-1].model_extra["lmstream"]["cache"]["hit"] is True
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "cached answer"
    assert fresh.parse().choices[0].message.content == "fresh"
    assert len(wire.requests) == 2  # the hits never reached the model


# --------------------------------------------------------------------------- the command line


def test_lmstream_serve_flags_name_the_served_models_and_allow_client_tools(wire):
    import os
    import subprocess
    import sys

    from tests.redis_server import free_port

    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls()))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")])}
    env["OPENAI_COMPATIBLE_API_KEY"] = "sk-test"
    cmd = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), "--model", MODEL]
    cmd += ["--base-url", f"{wire.base_url}/v1", "--served-model-name", "a", "--served-model-name", "b"]
    procs = []
    try:
        for extra in ([], ["--allow-client-tools"]):
            port = free_port()
            cmd[cmd.index("--port") + 1] = str(port)
            p = subprocess.Popen([*cmd, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            deadline = time.monotonic() + 30
            while True:
                assert p.poll() is None and time.monotonic() < deadline, "lmstream serve did not start"
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=10)
            with c:
                assert [m.id for m in c.models.list()] == ["a", "b"]
                if not extra:
                    with pytest.raises(openai.BadRequestError, match="--allow-client-tools"):
                        c.chat.completions.create(model="b", messages=HI, tools=[WEATHER])
                    with pytest.raises(openai.NotFoundError):
                        c.chat.completions.create(model=MODEL, messages=HI)
                else:
                    out = c.chat.completions.create(model="b", messages=HI, tools=[WEATHER])
                    assert out.choices[0].finish_reason == "tool_calls"
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def test_client_tools_never_reach_the_members_of_a_fallback_chain(wire):
    from lmstream import FallbackLMInvoker, LMRequestProcessor, PromptBuilder
    from lmstream.testing import ScriptedLMInvoker

    first, second = ScriptedLMInvoker(["a"]), ScriptedLMInvoker(["b"])
    proc = LMRequestProcessor(PromptBuilder(), FallbackLMInvoker([first, second]))
    with ServedApp(proc, allow_client_tools=True) as app, client(app) as c:
        out = c.chat.completions.create(model=proc.lm_invoker.model_id, messages=HI, tools=[WEATHER])
        assert out.choices[0].message.content == "a"
    assert first.tools == [] and second.tools == [] and proc.lm_invoker.tools == []


def test_a_browser_page_on_an_allowed_origin_passes_the_openai_js_sdks_preflight(wire):
    sdk_headers = "authorization,content-type,x-stainless-os,x-stainless-lang,x-stainless-retry-count"
    with ServedApp(wire_processor(wire), cors_origins=["http://localhost:3000"]) as app, httpx.Client() as h:
        ok = h.options(
            f"{app.url}/v1/chat/completions",
            headers={
                "origin": "http://localhost:3000",
                "access-control-request-method": "POST",
                "access-control-request-headers": sdk_headers,
            },
        )
        foreign = h.post(
            f"{app.url}/v1/chat/completions",
            json={"model": MODEL, "messages": HI},
            headers={"origin": "http://evil.test"},
        )
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert foreign.status_code == 403 and foreign.json()["error"]["type"] == "permission_error"
    assert wire.requests == []


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_an_image_content_part_reaches_the_model_and_a_remote_url_is_refused(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("a", " pixel"))))
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    with ServedApp(wire_processor(wire)) as app, client(app) as c:
        out = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": parts}])
        with pytest.raises(openai.BadRequestError) as e:
            remote = [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": remote}])
    assert out.choices[0].message.content == "a pixel"
    sent = wire.requests[0].json["messages"][0]["content"]
    assert {"type": "text", "text": "What is this?"} in sent
    assert any(p.get("type") == "image_url" and PNG in p["image_url"]["url"] for p in sent)
    assert e.value.param == "messages[0].content[0].image_url.url"
    assert len(wire.requests) == 1
