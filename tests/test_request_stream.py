"""One stream per request: `lmrp.stream()` / `invoker.stream()` (ScriptedLMInvoker: no model needed)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lmstream import (
    CallbackEventHandler,
    EventEmitter,
    JSONOutputParser,
    LMOutput,
    LMRequestProcessor,
    LMStreamError,
    PromptBuilder,
    ProviderError,
    RequestStream,
    StreamInterruptedError,
)
from lmstream.engine.deltas import FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from lmstream.testing import ScriptedLMInvoker

WAIT = 10


def lmrp(invoker: ScriptedLMInvoker, **kw) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(user_template="{question}"), invoker, **kw)


async def test_events_of_this_request_in_order_then_result():
    inv = ScriptedLMInvoker(["Hello", " there", UsageDelta(3, 2)])
    async with lmrp(inv).stream(question="Hi") as stream:
        assert isinstance(stream, RequestStream)
        events = [e async for e in stream]
    out = await stream.result()
    assert [e.type for e in events] == ["response", "response", "done"]
    assert "".join(e.value for e in events[:2]) == out.text == "Hello there"
    assert {e.metadata["request_id"] for e in events} == {stream.request_id}
    assert events[-1].metadata["usage"]["output_tokens"] == 2
    assert inv.calls[0][0][-1].text == "Hi"


async def test_text_yields_only_the_answer():
    inv = ScriptedLMInvoker([ThinkingDelta("hmm"), "A", "B"])
    async with lmrp(inv).stream(question="q") as stream:
        assert [t async for t in stream.text()] == ["A", "B"]


async def test_stream_starts_on_first_iteration_without_a_block():
    inv = ScriptedLMInvoker(["x"])
    stream = lmrp(inv).stream(question="q")
    assert not inv.calls  # nothing runs before the stream is used
    assert [e.type async for e in stream] == ["response", "done"]
    assert (await stream.result()).text == "x"


async def test_result_alone_runs_the_request_and_is_typed_by_the_parser():
    inv = ScriptedLMInvoker(['{"a": ', "1}"])
    stream = lmrp(inv, output_parser=JSONOutputParser()).stream(question="q")
    assert await stream.result() == {"a": 1}


async def test_failure_yields_the_error_event_then_raises_the_typed_exception():
    inv = ScriptedLMInvoker(["one", "two", ProviderError("boom", provider="scripted")])
    seen = []
    with pytest.raises(StreamInterruptedError) as info:
        async with lmrp(inv).stream(question="q") as stream:
            async for e in stream:
                seen.append(e)
    assert [e.type for e in seen] == ["response", "response", "error"]
    assert seen[-1].metadata["error_type"] == "StreamInterruptedError"
    assert info.value.partial_output.text == "onetwo"
    with pytest.raises(StreamInterruptedError):
        await stream.result()


async def test_leaving_early_cancels_the_request_and_closes_the_provider_stream():
    inv = ScriptedLMInvoker(["tok"] * 1000, delay=0.001)
    async with lmrp(inv).stream(question="q") as stream:
        async for e in stream:
            assert e.type == "response"
            break
        assert inv.open_streams == 1
    # the block's exit waited for the cancellation: the provider stream is already closed
    assert inv.open_streams == 0
    assert stream._task is not None and stream._task.cancelled()
    with pytest.raises(LMStreamError, match="cancelled"):
        await stream.result()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_an_exception_in_the_block_cancels_the_request():
    inv = ScriptedLMInvoker(["tok"] * 1000, delay=0.001)
    with pytest.raises(KeyError):
        async with lmrp(inv).stream(question="q") as stream:
            async for _ in stream:
                raise KeyError("user bug")
    assert inv.open_streams == 0 and stream._task is not None and stream._task.done()


async def test_aclose_cancels_at_once():
    inv = ScriptedLMInvoker(["tok"] * 1000, delay=0.01)
    stream = lmrp(inv).stream(question="q")
    await stream.__anext__()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await stream.aclose()
    assert loop.time() - t0 < 0.5
    assert inv.open_streams == 0


async def test_an_event_emitter_also_gets_the_same_events():
    inv = ScriptedLMInvoker(["a", "b"])
    got = []
    emitter = EventEmitter([CallbackEventHandler(got.append)])
    async with lmrp(inv).stream(question="q", event_emitter=emitter) as stream:
        events = [e async for e in stream]
    assert [e.id for e in got] == [e.id for e in events]
    assert len(emitter.tracker) == 0  # the emitter watched the request and saw it end


async def test_an_emitter_stream_watches_a_request_stream_too():
    inv = ScriptedLMInvoker(["a", "b"], delay=0.001)
    emitter = EventEmitter.with_stream_handler()
    stream = lmrp(inv).stream(question="q", event_emitter=emitter)
    async with stream:
        consumer = asyncio.create_task(_collect(emitter.stream()))
        mine = [e async for e in stream]
    theirs = await asyncio.wait_for(consumer, WAIT)
    assert [e.id for e in theirs] == [e.id for e in mine]


async def _collect(it) -> list:
    return [e async for e in it]


async def test_slow_reader_memory_is_bounded_and_nothing_is_lost():
    inv = ScriptedLMInvoker(["x"] * 5000)
    stream = lmrp(inv).stream(question="q")
    stream._handler.max_buffer = 16
    async with stream:
        await asyncio.wait_for(asyncio.shield(stream._task), WAIT)  # the request finishes before any read
        assert len(stream._handler) <= 16 + 2
        events = [e async for e in stream]
    text = "".join(e.value for e in events if e.type == "response")
    assert text == "x" * 5000
    assert sum(e.metadata.get("coalesced", 1) for e in events if e.type == "response") == 5000


async def test_tool_loop_streams_tool_calls_and_steps():
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    inv = ScriptedLMInvoker(
        [
            [
                ToolCallDelta(0, "c1", "add"),
                ToolCallDelta(0, arguments='{"a": 1,'),
                ToolCallDelta(0, arguments=' "b": 2}'),
                FinishDelta("tool_calls"),
            ],
            ["3"],
        ]
    )  # fmt: skip
    async with lmrp(inv, tools=[add]).stream(question="1+2?") as stream:
        events = [e async for e in stream]
    types = [e.type for e in events]
    assert types == [
        "tool_call_start", "tool_call_delta", "tool_call_delta", "tool_call", "tool_result", "response", "done"
    ]  # fmt: skip
    call_block = {e.metadata["block_id"] for e in events[:4]}
    assert len(call_block) == 1
    assert events[0].value == {"id": "c1", "name": "add"}
    assert "".join(e.value for e in events[1:3]) == '{"a": 1, "b": 2}'
    assert events[3].value == {"id": "c1", "name": "add", "arguments": {"a": 1, "b": 2}}
    assert events[4].value["output"] == 3
    assert [e.metadata.get("step") for e in events] == [1, 1, 1, 1, 1, 2, None]
    out = await stream.result()
    assert isinstance(out, LMOutput) and out.text == "3"
    assert events[-1].metadata["time_to_first_token"] is not None


async def test_invoker_stream_is_a_request_of_its_own():
    inv = ScriptedLMInvoker(["hi"])
    async with inv.stream("hello") as stream:
        events = [e async for e in stream]
    assert [e.type for e in events] == ["response", "done"]
    assert (await stream.result()).text == "hi"


async def test_cancelled_stream_leaves_asyncio_quiet(caplog):
    inv = ScriptedLMInvoker(["tok"] * 100, delay=0.001)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            async with lmrp(inv).stream(question="q") as stream:
                async for _e in stream:
                    break
        await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
