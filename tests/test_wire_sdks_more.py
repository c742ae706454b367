"""Fidelity tests, continued: the Anthropic and Google Gemini SDKs consume our wire fixtures."""

from __future__ import annotations

import anthropic
import pytest
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .wire_sdk_support import KEY, _anthropic, _genai

# google-genai's own aiohttp subclass warns at import/first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

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
