"""The LiteLLM and LangChain adapters' own rows: failures, cancellation, LangChain's ChatOpenAI
against the replay server, and a scripted BaseChatModel (reasoning blocks, tool-call chunks,
history, structured output)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmstream import (
    ConfigurationError,
    EventEmitter,
    LMRequestProcessor,
    PromptBuilder,
    ProviderError,
    StreamInterruptedError,
    build_lm_invoker,
)
from tests.wire import fixtures as fx
from tests.wire.providers import KEY, PROVIDERS, WEATHER, get_weather
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import lmrp as _lmrp
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

from .more_providers_support import FAST, TEXT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# =========================================================================== LiteLLM


async def test_litellm_failure_rows():
    """LiteLLM reports its own errors; the rows that hold for it, through its real client."""
    p = PROVIDERS["litellm"]
    async with WireServer() as srv:
        srv.enqueue(Script(status=500, body=fx.openai_error_for(500)), Script(chunks=p.text(TEXT)))
        assert (await _invoker(p, srv, retry_config=FAST).invoke("hi")).text == "".join(TEXT)
        assert len(srv.requests) == 2
    async with WireServer() as srv:
        srv.enqueue(Script(status=401, body=fx.openai_error_for(401)))
        with pytest.raises(ProviderError) as info:
            await _invoker(p, srv, retry_config=FAST).invoke("hi")
        assert info.value.status_code == 401 and len(srv.requests) == 1
    async with WireServer() as srv:
        chunks = p.text(TEXT)
        srv.enqueue(Script(chunks=chunks, drop_after=4))  # role chunk + 3 text deltas
        with pytest.raises(StreamInterruptedError) as dropped:
            await _invoker(p, srv, retry_config=FAST).invoke("hi")
        assert dropped.value.partial_output.text == "".join(TEXT[:3]) and len(srv.requests) == 1
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_midstream_error(("Part", "ial"))))
        with pytest.raises(StreamInterruptedError) as inband:
            await _invoker(p, srv, retry_config=FAST).invoke("hi")
        assert inband.value.partial_output.text == "Partial"


async def test_litellm_cancel_closes_connection():
    p = PROVIDERS["litellm"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(tuple(f" w{i}" for i in range(30))), delay_between=0.1))
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(p, srv))
        emitter = EventEmitter.with_stream_handler()
        task = asyncio.create_task(lmrp.process(q="x", event_emitter=emitter))
        async with asyncio.timeout(5):
            async for e in emitter.stream():
                if e.type == "response":
                    task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await srv.wait_for(lambda s: s.disconnects >= 1, 1.0)


# =========================================================================== LangChain


def _chat_openai(srv: WireServer) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="gpt-4o-mini", base_url=srv.base_url + "/v1", api_key=KEY, max_retries=0, stream_usage=True)


async def test_langchain_chat_openai_text_usage_and_tool_loop():
    from lmstream import LangChainLMInvoker

    async with WireServer() as srv:
        calls = [fx.ToolCall("get_weather", json.dumps(WEATHER), id="call_a", fragment=4)]
        srv.enqueue(
            Script(chunks=fx.openai_chat_text(TEXT, usage=fx.openai_chat_usage(11, 5))),
            Script(chunks=fx.openai_chat_tool_calls(calls)),
            Script(chunks=fx.openai_chat_text(("Sunny.",))),
        )
        lmrp = _lmrp(LangChainLMInvoker(_chat_openai(srv)))
        events, out = await _process(lmrp, q="Tokyo?")
        assert [e.value for e in events if e.type == "response"] == list(TEXT)
        assert (out.usage.input_tokens, out.usage.output_tokens, out.finish_reason) == (11, 5, "stop")
        lmrp.set_tools([get_weather])
        events, out = await _process(lmrp, q="Weather?")
        replay = srv.requests[2].json["messages"]
    assert out.text == "Sunny."
    call = next(e.value for e in events if e.type == "tool_call")
    assert call["name"] == "get_weather" and call["arguments"] == WEATHER
    assert replay[-1]["role"] == "tool" and replay[-1]["tool_call_id"] == "call_a"
    assert srv.requests[0].json["messages"][0] == {"content": "Be brief.", "role": "system"}


async def test_langchain_id_and_errors():
    async with WireServer() as srv:
        srv.enqueue(Script(status=429, body=fx.openai_error_for(429)), Script(chunks=fx.openai_chat_text(TEXT)))
        inv = build_lm_invoker(
            "langchain/langchain_openai:ChatOpenAI",
            credentials=KEY,
            config={"base_url": srv.base_url + "/v1", "model_kwargs": {"model": "gpt-4o-mini", "max_retries": 0}},
            retry_config=FAST,
        )
        out = await inv.invoke("hi")
        assert len(srv.requests) == 2 and out.text == "".join(TEXT)  # 429 retried by lmstream
    assert inv.model_name == "langchain_openai:ChatOpenAI" and KEY not in repr(inv)
    with pytest.raises(ConfigurationError, match="module"):
        build_lm_invoker("langchain/ChatOpenAI")


def _scripted_chat_model(chunks: list[Any]) -> Any:
    """A real BaseChatModel subclass whose stream is given (langchain-core's extension API)."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.outputs import ChatGenerationChunk, ChatResult

    class Scripted(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "scripted"

        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            raise NotImplementedError

        async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
            for chunk in chunks:
                await asyncio.sleep(0)
                yield ChatGenerationChunk(message=chunk)

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self.bind(tools=tools, **kwargs)

    return Scripted()


async def test_langchain_reasoning_blocks_and_tool_call_chunks():
    from langchain_core.messages import AIMessageChunk

    from lmstream import LangChainLMInvoker

    chunks = [
        AIMessageChunk(content=[{"type": "thinking", "thinking": "Let me", "index": 0}]),
        AIMessageChunk(content=[{"type": "thinking", "thinking": " think.", "signature": "sig-lc", "index": 0}]),
        AIMessageChunk(content="", additional_kwargs={"reasoning_content": "more"}),
        AIMessageChunk(content=[{"type": "text", "text": "Checking", "index": 1}]),
        AIMessageChunk(
            content="", tool_call_chunks=[{"name": "get_weather", "args": '{"city"', "id": "c1", "index": 2}]
        ),
        AIMessageChunk(content="", tool_call_chunks=[{"name": None, "args": ': "Paris"}', "id": None, "index": 2}]),
        AIMessageChunk(
            content="",
            usage_metadata={"input_tokens": 7, "output_tokens": 9, "total_tokens": 16},
            response_metadata={"stop_reason": "tool_use"},
        ),
    ]
    inv = LangChainLMInvoker(_scripted_chat_model(chunks))
    inv.set_tools([get_weather])
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(inv.invoke("Weather?", event_emitter=emitter))
    events = [e async for e in emitter.stream()]
    out = await task
    types = [e.type for e in events]
    assert types[:2] == ["thinking_start", "thinking"] and types.index("thinking_end") < types.index("response")
    assert out.thinking == "Let me think.more" and out.thinking_blocks[0].signature == "sig-lc"
    assert out.text == "Checking"
    assert [(c.id, c.name, c.arguments) for c in out.tool_calls] == [("c1", "get_weather", {"city": "Paris"})]
    assert out.finish_reason == "tool_calls" and (out.usage.input_tokens, out.usage.output_tokens) == (7, 9)


async def test_langchain_history_and_structured_output():
    from pydantic import BaseModel

    from lmstream import LangChainLMInvoker, Message

    class City(BaseModel):
        city: str
        population: int

    answer = json.dumps({"city": "Paris", "population": 2100000})
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(tuple(fx.split_text(answer, 6)))))
        lmrp = _lmrp(LangChainLMInvoker(_chat_openai(srv)))
        lmrp.set_response_schema(City)
        history = [Message.user("My name is Ada."), Message.assistant("Hello Ada!")]
        events, out = await _process(lmrp, q="Biggest city?", history=history)
        sent = srv.requests[0].json["messages"]
    assert out.structured_output == City(city="Paris", population=2100000)
    assert [e.value for e in events if e.type == "data"][-1] == {"city": "Paris", "population": 2100000}
    assert "population" in sent[0]["content"] and sent[0]["role"] == "system"  # the schema, instructed
    assert [m["content"] for m in sent[-3:]] == ["My name is Ada.", "Hello Ada!", "Biggest city?"]
