"""Fidelity tests: the official SDKs consume our wire fixtures without error.

If an SDK parses a fixture into the expected text / tool calls / usage, the
fixture matches what the SDK was built against; our own invokers can then be
tested offline against the same bytes.  Also covers the fault injection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

# google-genai's own aiohttp subclass warns at import/first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

KEY = "sk-wire-dummy"


def _openai(srv: WireServer, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{srv.base_url}/v1", api_key=KEY, max_retries=0, timeout=5.0, **kw)


def _anthropic(srv: WireServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=5.0)


def _genai(srv: WireServer) -> genai.Client:
    # google-genai 3.x defaults to /v1/; the public Gemini API docs use /v1beta/.
    opts = genai_types.HttpOptions(base_url=srv.base_url, api_version="v1beta", timeout=5000)
    return genai.Client(api_key=KEY, http_options=opts)


def _events(chunks: list[bytes]) -> list[tuple[str | None, Any]]:
    """Tiny SSE parser for structural assertions on fixtures themselves."""
    out: list[tuple[str | None, Any]] = []
    for block in b"".join(chunks).decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        payload = "\n".join(data)
        out.append((event, payload if payload == "[DONE]" else json.loads(payload)))
    return out


# ------------------------------------------------------- OpenAI Chat Completions


@pytest.mark.asyncio
async def test_openai_chat_text_with_usage() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("Hel", "lo", " there")), delay_between=0.001))
        client = _openai(srv)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage, roles = "", None, None, []
        async for chunk in stream:
            if chunk.usage is not None:
                assert chunk.choices == []
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                roles.append(choice.delta.role)
                finish = choice.finish_reason or finish
        assert text == "Hello there"
        assert finish == "stop"
        assert roles[0] == "assistant"
        assert usage is not None and usage.total_tokens == 17
        assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 0
        req = srv.requests[0]
        assert (req.method, req.path) == ("POST", "/v1/chat/completions")
        assert req.json["stream"] is True and req.json["stream_options"] == {"include_usage": True}
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.completed and req.chunks_written == len(fx.openai_chat_text(("Hel", "lo", " there")))


@pytest.mark.asyncio
@pytest.mark.parametrize("interleave", [False, True])
async def test_openai_chat_parallel_tool_calls(interleave: bool) -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_tool_calls(interleave=interleave)))
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in stream:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                    slot["id"] += tc.id or ""
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["args"] += tc.function.arguments or ""
        assert finish == "tool_calls"
        assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
        assert [calls[i]["id"] for i in sorted(calls)] == ["call_wire_0", "call_wire_1"]
        assert json.loads(calls[0]["args"]) == {"city": "Paris", "unit": "celsius"}
        assert json.loads(calls[1]["args"]) == {"timezone": "Europe/Paris"}


@pytest.mark.asyncio
async def test_openai_chat_stream_helper_accumulates_tool_calls() -> None:
    """The SDK's own accumulator (chat.completions.stream) agrees with us."""
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_tool_calls(interleave=True)))
        async with _openai(srv).chat.completions.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream_options={"include_usage": True}
        ) as stream:
            final = await stream.get_final_completion()
        msg = final.choices[0].message
        assert msg.tool_calls is not None and [t.function.name for t in msg.tool_calls] == ["get_weather", "get_time"]
        assert final.usage is not None and final.usage.total_tokens == 70


@pytest.mark.asyncio
async def test_openai_chat_reasoning_content_extension() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("4",), reasoning_deltas=("2+2", " is 4"))))
        stream = await _openai(srv).chat.completions.create(
            model="deepseek-reasoner", messages=[{"role": "user", "content": "2+2"}], stream=True
        )
        reasoning, text = "", ""
        async for chunk in stream:
            for choice in chunk.choices:
                reasoning += getattr(choice.delta, "reasoning_content", None) or ""
                text += choice.delta.content or ""
        assert (reasoning, text) == ("2+2 is 4", "4")


@pytest.mark.asyncio
async def test_openai_chat_inband_error_raises() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_midstream_error()))
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = ""
        with pytest.raises(openai.APIError, match="server had an error"):
            async for chunk in stream:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
        assert text == "Partial answer"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "exc"),
    [(400, openai.BadRequestError), (401, openai.AuthenticationError), (429, openai.RateLimitError)],
)
async def test_openai_error_bodies(status: int, exc: type[Exception]) -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(status=status, body=fx.openai_error_for(status), headers={"retry-after": "1"}))
        with pytest.raises(exc) as info:
            await _openai(srv).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        assert isinstance(info.value, openai.APIStatusError)
        assert info.value.status_code == status
        assert info.value.response.headers["retry-after"] == "1"
        assert info.value.code == fx.OPENAI_ERRORS[status][2]


# ----------------------------------------------------------- OpenAI Responses


@pytest.mark.asyncio
async def test_openai_responses_text_and_usage() -> None:
    chunks = fx.openai_responses_text(
        ("Hi", " from", " responses"), usage=fx.openai_responses_usage(10, 3, cached_tokens=4)
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks))
        stream = await _openai(srv).responses.create(model="gpt-4.1-mini", input="hi", stream=True)
        text, types, seqs, final = "", [], [], None
        async for event in stream:
            types.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                final = event.response
        assert text == "Hi from responses"
        assert types[:4] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert types[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert seqs == list(range(len(seqs)))
        assert final is not None and final.output_text == "Hi from responses"
        assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 4
        assert final.usage.output_tokens_details.reasoning_tokens == 0
        assert srv.requests[0].path == "/v1/responses" and srv.requests[0].json["stream"] is True


@pytest.mark.asyncio
async def test_openai_responses_reasoning_summary() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_responses_reasoning()))
        async with _openai(srv).responses.stream(model="o4-mini", input="2+2") as stream:
            summary = ""
            async for event in stream:
                if event.type == "response.reasoning_summary_text.delta":
                    summary += event.delta
            final = await stream.get_final_response()
        assert summary == "**Thinking** about it."
        assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == summary
        assert final.output_text == "The answer is 4."
        assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 128


@pytest.mark.asyncio
async def test_openai_responses_function_calls() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_responses_function_call()))
        async with _openai(srv).responses.stream(model="gpt-4.1-mini", input="weather?") as stream:
            deltas: dict[str, str] = {}
            async for event in stream:
                if event.type == "response.function_call_arguments.delta":
                    deltas[event.item_id] = deltas.get(event.item_id, "") + event.delta
            final = await stream.get_final_response()
        calls = [item for item in final.output if item.type == "function_call"]
        assert [(c.name, c.call_id) for c in calls] == [("get_weather", "call_wire_0"), ("get_time", "call_wire_1")]
        assert [json.loads(c.arguments) for c in calls] == [json.loads(a) for a in deltas.values()]


@pytest.mark.asyncio
async def test_openai_responses_structured_output() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_responses_structured()))
        stream = await _openai(srv).responses.create(model="gpt-4.1-mini", input="json", stream=True)
        text = ""
        async for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        assert json.loads(text) == {"city": "Paris", "temperature_c": 21, "tags": ["sunny", "mild"]}


@pytest.mark.asyncio
async def test_openai_responses_error_and_failed_events() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_responses_error(after_text=("par", "tial"))))
        srv.enqueue(Script(chunks=fx.openai_responses_failed()))
        client = _openai(srv)
        seen = []
        async for event in await client.responses.create(model="gpt-4.1-mini", input="x", stream=True):
            seen.append(event)
        assert seen[-1].type == "error" and seen[-1].code == "server_error"
        assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == "partial"
        seen = [e async for e in await client.responses.create(model="gpt-4.1-mini", input="x", stream=True)]
        assert seen[-1].type == "response.failed"
        assert seen[-1].response.status == "failed" and seen[-1].response.error.code == "server_error"


# ---------------------------------------------------------- Anthropic Messages


@pytest.mark.asyncio
async def test_anthropic_create_stream_text() -> None:
    async with WireServer() as srv:
        srv.enqueue(
            Script(chunks=fx.anthropic_text(("Hello", " Claude"), input_tokens=11, output_tokens=4, ping_every=1))
        )
        stream = await _anthropic(srv).messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text, types, out_tokens, in_tokens = "", [], None, None
        async for event in stream:
            types.append(event.type)
            if event.type == "message_start":
                in_tokens = event.message.usage.input_tokens
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text += event.delta.text
            elif event.type == "message_delta":
                out_tokens = event.usage.output_tokens
                assert event.delta.stop_reason == "end_turn"
        assert text == "Hello Claude"
        assert (in_tokens, out_tokens) == (11, 4)
        assert "ping" not in types  # the SDK swallows pings
        assert types[0] == "message_start" and types[-1] == "message_stop"
        req = srv.requests[0]
        assert req.path == "/v1/messages"
        # older SDKs send x-api-key; anthropic 2.x sends a bearer token
        assert KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "").removeprefix("Bearer "))
        assert "anthropic-version" in req.headers


@pytest.mark.asyncio
async def test_anthropic_stream_helper_thinking_and_tools() -> None:
    blocks = (fx.AThinking(), fx.AText(("Checking.",)), fx.AToolUse())
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.anthropic_stream(blocks, cache_read_input_tokens=100)))
        async with _anthropic(srv).messages.stream(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            msg = await stream.get_final_message()
        assert text == "Checking."
        assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
        thinking, _, tool = msg.content
        assert thinking.type == "thinking" and thinking.thinking == "Let me think step by step."
        assert thinking.signature == fx.AThinking.signature
        assert tool.type == "tool_use" and tool.input == {"location": "San Francisco, CA", "unit": "fahrenheit"}
        assert msg.stop_reason == "tool_use"
        assert msg.usage.cache_read_input_tokens == 100 and msg.usage.output_tokens == 15


@pytest.mark.asyncio
async def test_anthropic_inband_overloaded_error() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.anthropic_overloaded_stream()))
        stream = await _anthropic(srv).messages.create(
            model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(anthropic.APIStatusError) as info:
            async for _ in stream:
                pass
        assert "overloaded_error" in str(info.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (429, anthropic.RateLimitError),
        (529, anthropic.APIStatusError),
    ],
)
async def test_anthropic_error_bodies(status: int, exc: type[Exception]) -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(status=status, body=fx.anthropic_error_body(status), headers={"retry-after": "2"}))
        with pytest.raises(exc) as info:
            await _anthropic(srv).messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        err = info.value
        assert isinstance(err, anthropic.APIStatusError) and err.status_code == status
        assert isinstance(err.body, dict) and err.body["error"]["type"] == fx.ANTHROPIC_ERROR_TYPES[status][0]


# --------------------------------------------------------------- Google Gemini


@pytest.mark.asyncio
@pytest.mark.parametrize("newline", ["\r\n", "\n"])
async def test_gemini_stream_text_thinking_usage(newline: str) -> None:
    usage = fx.gemini_usage(7, 5, thoughts_tokens=30, cached_tokens=3)
    chunks = fx.gemini_thinking(("Plan: add.",), ("2 + 2", " = 4"), usage=usage, newline=newline)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks))
        text, thoughts, last = "", "", None
        stream = await _genai(srv).aio.models.generate_content_stream(model="gemini-2.5-flash", contents="2+2?")
        async for resp in stream:
            for part in resp.candidates[0].content.parts:
                if part.thought:
                    thoughts += part.text or ""
                else:
                    text += part.text or ""
            last = resp
        assert (thoughts, text) == ("Plan: add.", "2 + 2 = 4")
        assert last is not None and last.candidates[0].finish_reason == genai_types.FinishReason.STOP
        um = last.usage_metadata
        assert um is not None
        assert (um.prompt_token_count, um.candidates_token_count, um.thoughts_token_count) == (7, 5, 30)
        assert (um.cached_content_token_count, um.total_token_count) == (3, 42)
        assert last.model_version == "gemini-2.5-flash"
        req = srv.requests[0]
        assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        assert req.query == {"alt": "sse"}
        assert req.headers["x-goog-api-key"] == KEY


@pytest.mark.asyncio
async def test_gemini_function_calls() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.gemini_function_call()))
        calls = []
        stream = await _genai(srv).aio.models.generate_content_stream(model="gemini-2.5-flash", contents="weather?")
        async for resp in stream:
            calls += resp.function_calls or []
        assert [(c.name, c.args) for c in calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"timezone": "Europe/Paris"}),
        ]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 429, 503])
async def test_gemini_error_bodies(status: int) -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(status=status, body=fx.gemini_error_body(status)))
        with pytest.raises(genai_errors.APIError) as info:
            stream = await _genai(srv).aio.models.generate_content_stream(model="gemini-2.5-flash", contents="x")
            async for _ in stream:
                pass
        assert info.value.code == status
        assert info.value.status == fx.GEMINI_STATUS[status][0]


# ------------------------------------------------------------ fault injection


@pytest.mark.asyncio
async def test_drop_after_breaks_stream_for_httpx_and_sdk() -> None:
    chunks = fx.openai_chat_text(("a", "b", "c", "d"))
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, drop_after=3), Script(chunks=chunks, drop_after=3, reset=True))
        got = b""
        async with httpx.AsyncClient(timeout=5.0) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("POST", f"{srv.base_url}/v1/chat/completions", json={}) as resp:
                    async for piece in resp.aiter_bytes():
                        got += piece
        assert got == b"".join(chunks[:3])
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
            async for _ in stream:
                pass
        assert [r.outcome for r in srv.requests] == ["dropped", "dropped"]
        assert [r.chunks_written for r in srv.requests] == [3, 3]


@pytest.mark.asyncio
async def test_stall_after_read_timeout_and_disconnect_seen() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.anthropic_text(), stall_after=2))
        client = anthropic.AsyncAnthropic(
            base_url=srv.base_url,
            api_key=KEY,
            max_retries=0,
            timeout=anthropic.Timeout(5.0, read=0.3),  # anthropic 2.x is on httpx2
        )
        stream = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        # A mid-body read timeout escapes unwrapped (httpx2.ReadTimeout), not APITimeoutError.
        with pytest.raises(Exception) as info:
            async for _ in stream:
                pass
        assert "Timeout" in type(info.value).__name__
        await stream.close()
        assert await srv.wait_for(lambda s: s.disconnects == 1, timeout=1.5)
        req = srv.requests[0]
        assert req.chunks_written == 2 and req.disconnected and req.outcome == "client-closed"

        srv.enqueue(Script(chunks=fx.gemini_text(), stall_after=1))
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.3)) as raw:
            with pytest.raises(httpx.ReadTimeout):
                async with raw.stream("POST", f"{srv.base_url}/v1beta/models/m:streamGenerateContent?alt=sse") as r:
                    async for _ in r.aiter_bytes():
                        pass
        assert await srv.wait_for(lambda s: s.disconnects == 2, timeout=1.5)
        assert srv.requests[1].chunks_written == 1 and srv.requests[1].query == {"alt": "sse"}


@pytest.mark.asyncio
async def test_client_cancel_closes_connection() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(tuple("abcdefghij")), delay_between=0.05))
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        n = 0
        async for _ in stream:
            n += 1
            if n == 3:
                break
        await stream.close()
        assert await srv.wait_for(lambda s: s.disconnects == 1, timeout=1.5)
        assert srv.requests[0].chunks_written < len(fx.openai_chat_text(tuple("abcdefghij")))


@pytest.mark.asyncio
async def test_garbage_and_unqueued_request() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=[b"data: {}\n\n"], garbage=b"\x00\xffnot-sse\n\n", garbage_at=0))
        async with httpx.AsyncClient(timeout=5.0) as client:
            resp = await client.post(f"{srv.base_url}/x", json={"a": 1})
            assert resp.content == b"\x00\xffnot-sse\n\ndata: {}\n\n"
            resp = await client.post(f"{srv.base_url}/y")
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "wire_no_script"
        assert srv.requests[0].json == {"a": 1} and srv.paths == ["/x", "/y"]


def test_thread_mode_with_sync_sdk() -> None:
    """Sync clients work against the server running in a background thread."""
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("sync", " ok"))))
        client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key=KEY, max_retries=0, timeout=5.0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "sync ok"
        assert srv.wait_for_sync(lambda s: s.requests and s.requests[0].completed, timeout=1.0)


# ------------------------------------------------------- fixture structure


def test_fixture_framing() -> None:
    """Checks the framing facts the invokers rely on."""
    chat = _events(fx.openai_chat_text())
    assert chat[-1] == (None, "[DONE]") and chat[-2][1]["choices"] == [] and chat[0][1]["usage"] is None
    resp = _events(fx.openai_responses_reasoning())
    assert all(ev == data["type"] for ev, data in resp)
    assert [d["sequence_number"] for _, d in resp] == list(range(len(resp)))
    ant = _events(fx.anthropic_tool_use())
    assert all(ev == data["type"] for ev, data in ant)
    assert all(c.endswith(b"\r\n\r\n") and c.startswith(b"data: {") for c in fx.gemini_text())
    assert json.loads(fx.gemini_error_body(429))["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert json.loads(fx.anthropic_error_body(529))["error"]["type"] == "overloaded_error"


@pytest.mark.asyncio
async def test_rechunked_streams_still_parse() -> None:
    """Events split at arbitrary byte offsets (mid-UTF-8 too) still decode."""
    chunks = fx.rechunk(
        fx.anthropic_text(
            (
                "héllo ",
                "wörld ✓",
            )
        ),
        7,
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks))
        async with _anthropic(srv).messages.stream(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text == "héllo wörld ✓"
        await asyncio.sleep(0)


def test_fixtures_validate_strictly_against_sdk_models() -> None:
    """Every event passes the SDKs' pydantic models in strict (validating) mode.

    The SDKs themselves parse leniently (``construct``), so this catches a
    missing required field or a misspelt discriminator the stream tests miss.
    """
    from anthropic.types import RawMessageStreamEvent
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    usage = fx.openai_responses_usage(cache_write_tokens=0)
    responses = TypeAdapter(ResponseStreamEvent)
    for chunks in (
        fx.openai_responses_text(usage=usage),
        fx.openai_responses_reasoning(usage=usage),
        fx.openai_responses_function_call(usage=usage),
        fx.openai_responses_structured(usage=usage),
        fx.openai_responses_error(after_text=("a",)),
        fx.openai_responses_failed(),
    ):
        for _, data in _events(chunks):
            responses.validate_python(data)
    for chunks in (fx.openai_chat_text(reasoning_deltas=("r",)), fx.openai_chat_tool_calls(interleave=True)):
        for _, data in _events(chunks):
            if data != "[DONE]":
                ChatCompletionChunk.model_validate(data)
    messages = TypeAdapter(RawMessageStreamEvent)
    for chunks in (fx.anthropic_thinking(), fx.anthropic_tool_use()):
        for event, data in _events(chunks):
            if event != "ping":
                messages.validate_python(data)
    for chunks in (fx.gemini_thinking(), fx.gemini_function_call()):
        for _, data in _events(chunks):
            genai_types.GenerateContentResponse.model_validate(data)
