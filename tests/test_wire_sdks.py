"""Fidelity tests: the official SDKs consume our wire fixtures without error.

If an SDK parses a fixture into the expected text / tool calls / usage, the
fixture matches what the SDK was built against; our own invokers can then be
tested offline against the same bytes. Here: OpenAI Chat Completions and Responses;
test_wire_sdks_more.py: Anthropic and Gemini; test_wire_faults.py: fault injection
and the fixtures' own structure."""

from __future__ import annotations

import json

import openai
import pytest

from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .wire_sdk_support import KEY, _openai

# google-genai's own aiohttp subclass warns at import/first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

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
