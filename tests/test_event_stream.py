"""`stream()`: filters, bounded buffers, and how a stream ends (done, failure, cancellation, close)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging

import pytest

from lmstream import (
    CallbackEventHandler,
    ConfigurationError,
    ConsoleEventHandler,
    Event,
    EventEmitter,
    EventLevel,
    EventType,
    PrintEventHandler,
    StreamEventHandler,
)
from lmstream.engine.deltas import UsageDelta
from lmstream.testing import ScriptedLMInvoker

from .conftest import SHORT
from .events_support import WAIT, Recorder, collect, processor

# --------------------------------------------------------------------------- stream()


async def _filled_emitter() -> EventEmitter:
    emitter = EventEmitter.with_stream_handler(event_level=EventLevel.TRACE)
    await emitter.emit("t", level=EventLevel.TRACE)
    await emitter.emit("r1")
    await emitter.emit({"id": "1", "name": "f", "arguments": {}}, type=EventType.TOOL_CALL)
    await emitter.emit("w", type=EventType.STATUS, level=EventLevel.WARN)
    await emitter.emit("r2")
    await emitter.emit("e", type=EventType.ERROR, level=EventLevel.ERROR)
    await emitter.close()
    return emitter


async def test_stream_filters_by_type_and_level():
    all_events = await collect((await _filled_emitter()).stream())
    assert [e.type for e in all_events] == ["response", "response", "tool_call", "status", "response", "error"]
    only_response = await collect((await _filled_emitter()).stream(types="response"))
    assert [e.value for e in only_response] == ["t", "r1", "r2"]
    two_types = await collect((await _filled_emitter()).stream(types=[EventType.TOOL_CALL, "error"]))
    assert [e.type for e in two_types] == ["tool_call", "error"]
    warn_up = await collect((await _filled_emitter()).stream(min_level=EventLevel.WARN))
    assert [e.value for e in warn_up] == ["w", "e"]
    both = await collect((await _filled_emitter()).stream(types="response", min_level=EventLevel.INFO))
    assert [e.value for e in both] == ["r1", "r2"]


async def test_stream_serialize_yields_json():
    streamer = StreamEventHandler(serialize=True)
    emitter = EventEmitter([streamer])
    await emitter.emit("tok")
    await emitter.close()
    items = await collect(streamer.stream())
    assert len(items) == 1 and isinstance(items[0], str)
    assert json.loads(items[0])["value"] == "tok"


async def test_close_ends_a_waiting_stream_and_is_idempotent():
    rec = Recorder("rec")
    emitter = EventEmitter([StreamEventHandler(), rec])
    seen: list[str] = []
    reading = asyncio.Event()

    async def consume() -> None:
        async for e in emitter.stream():
            seen.append(e.value)
            if len(seen) == 3:
                reading.set()

    consumer = asyncio.create_task(consume())
    for v in "abc":
        await emitter.emit(v)
    await asyncio.wait_for(reading.wait(), 5)
    await asyncio.sleep(0.01)
    assert not consumer.done()  # mid-stream, waiting for more
    await emitter.close()
    await asyncio.wait_for(consumer, 5)
    assert seen == ["a", "b", "c"]
    await emitter.close()
    assert rec.closed == 1
    assert await collect(emitter.stream(), 5) == []


async def test_stream_needs_a_stream_handler():
    with pytest.raises(ConfigurationError, match="StreamEventHandler"):
        EventEmitter([PrintEventHandler(file=io.StringIO())]).stream()


async def test_stream_buffer_bounded_for_a_stalled_consumer():
    handler = StreamEventHandler(max_buffer=8)
    emitter = EventEmitter([handler])
    meta = {"request_id": "r", "block_id": "r.1"}
    chars = [chr(ord("a") + i % 26) + str(i % 10) for i in range(10_000)]
    peak = 0
    for c in chars:
        await emitter.emit(Event(c, EventType.RESPONSE, EventLevel.INFO, meta))
        peak = max(peak, len(handler))
    assert peak <= 8 + 2
    await emitter.close()
    events = await collect(emitter.stream())
    assert "".join(e.value for e in events) == "".join(chars)
    assert sum(e.metadata.get("coalesced", 1) for e in events) == len(chars)
    merged = [e for e in events if "coalesced" in e.metadata]
    assert merged and all(e.metadata["coalesced"] > 1 for e in merged)
    assert all(e.metadata["block_id"] == "r.1" for e in events)
    assert meta == {"request_id": "r", "block_id": "r.1"}  # the shared dict is not mutated
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert len({e.id for e in events}) == len(events)


async def test_stream_buffer_never_merges_other_types_or_blocks():
    handler = StreamEventHandler(max_buffer=4)
    emitter = EventEmitter([handler])
    text_a = {"request_id": "r", "block_id": "r.1"}
    think = {"request_id": "r", "block_id": "r.2"}
    text_b = {"request_id": "r", "block_id": "r.3"}
    other_req = {"request_id": "q", "block_id": "r.3"}
    sent: list[Event] = []
    for i in range(50):
        sent.append(Event(f"a{i};", EventType.RESPONSE, EventLevel.INFO, text_a))
    for i in range(5):
        sent.append(
            Event({"id": f"c{i}", "name": "f", "arguments": {"i": i}}, EventType.TOOL_CALL, EventLevel.INFO, text_a)
        )
    for i in range(50):
        sent.append(Event(f"t{i};", EventType.THINKING, EventLevel.INFO, think))
    for i in range(50):
        sent.append(Event(f"b{i};", EventType.RESPONSE, EventLevel.INFO, text_b))
    for i in range(50):
        sent.append(Event(f"q{i};", EventType.RESPONSE, EventLevel.INFO, other_req))
    for ev in sent:
        await emitter.emit(ev)
    assert len(handler) <= 4 + 5 + 4
    await emitter.close()
    events = await collect(emitter.stream())
    tool_calls = [e for e in events if e.type == "tool_call"]
    assert [e.value["id"] for e in tool_calls] == [f"c{i}" for i in range(5)]
    assert all("coalesced" not in e.metadata for e in tool_calls)
    # every event holds text of exactly one (type, request, block); order and content are kept
    for e in events:
        if e.type != "tool_call":
            prefixes = {p[0] for p in e.value.split(";") if p}
            assert len(prefixes) == 1, e.value
    expected = "".join(e.value for e in sent if isinstance(e.value, str))
    assert "".join(e.value for e in events if isinstance(e.value, str)) == expected
    assert [e.type for e in events].index("tool_call") > 0
    last_a = max(i for i, e in enumerate(events) if e.type == "response" and e.value.startswith("a"))
    assert last_a < [e.type for e in events].index("tool_call")


# an answer over two lines, with usage, as a provider streams it
FRUIT = ["A ripe", " mango.", "\nSweet", " and", " soft.", UsageDelta(input_tokens=9, output_tokens=5)]


async def test_a_request_fans_out_to_every_handler_and_stream_ends(caplog):
    printed, console = io.StringIO(), io.StringIO()
    sync_values: list[str] = []
    async_values: list[str] = []

    async def acb(event: Event) -> None:
        async_values.append(event.value)

    def boom(event: Event) -> None:
        raise RuntimeError("handler bug")

    stream = StreamEventHandler()
    rec = Recorder("rec")
    emitter = EventEmitter(
        [
            CallbackEventHandler(boom, name="boom"),
            Recorder("bad", fail=True),
            stream,
            PrintEventHandler(file=printed),
            ConsoleEventHandler(file=console),
            CallbackEventHandler(lambda e: sync_values.append(e.value)),
            CallbackEventHandler(acb),
            rec,
        ]
    )
    with caplog.at_level(logging.ERROR, logger="lmstream"):
        task = asyncio.create_task(
            processor(ScriptedLMInvoker(FRUIT, delay=0.001)).process(
                question="Name a fruit.", event_emitter=emitter, hyperparameters=SHORT
            )
        )
        events = await collect(emitter.stream())
        output = await asyncio.wait_for(task, WAIT)
    await emitter.close()

    assert output.text.strip()
    assert events[-1].type == "done" and events[-1].level == EventLevel.INFO
    assert "".join(e.value for e in events if e.type == "response") == output.text
    values = [e.value for e in events]
    assert sync_values == values and async_values == values
    assert [e.id for e in rec.events] == [e.id for e in events]
    # the failing handlers were logged for every event, and did not stop the others
    logged = [r.getMessage() for r in caplog.records if r.name == "lmstream"]
    assert sum("handler bug" in m for m in logged) == len(events)
    assert sum("recorder bad failed" in m for m in logged) == len(events)
    # print: one line per event
    lines = printed.getvalue().splitlines()
    assert len(lines) == len(events)
    assert [line.split(" ", 3)[2] for line in lines] == [str(e.type) for e in events]
    assert all(line.split(" ", 3)[1] == "INFO" for line in lines)
    # console: answer inline, then one done line; no colour codes when not a tty
    out = console.getvalue()
    assert "\x1b" not in out
    assert out.startswith(output.text + "\n[done] finish_reason=" + str(output.finish_reason))
    assert out.endswith("\n") and out.count("\n") == output.text.count("\n") + 2


async def test_stream_ends_after_a_failed_request():
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        processor(ScriptedLMInvoker(["tok"] * 200, delay=0.002)).process(
            question="Hi", event_emitter=emitter, hyperparameters={"max_tokens": 0}
        )
    )
    events = await collect(emitter.stream(), 10)
    with pytest.raises(ConfigurationError, match="max_tokens"):
        await asyncio.wait_for(task, 10)
    assert [e.type for e in events] == ["error"]
    assert events[0].level == EventLevel.ERROR
    assert events[0].metadata["error_type"] == "ConfigurationError"
    assert "max_tokens" in events[0].value
    await emitter.close()


async def test_stream_ends_after_cancellation_before_the_first_token():
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        processor(ScriptedLMInvoker(["tok"] * 200, delay=0.002)).process(
            question="Hi", event_emitter=emitter, hyperparameters=SHORT
        )
    )
    await asyncio.sleep(0)  # the request has started (registered with the emitter)
    task.cancel()
    events = await collect(emitter.stream(), 10)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events[-1].type == "error"
    assert events[-1].metadata["error_type"] == "CancelledError"
    await emitter.close()


async def test_stream_ends_when_the_task_is_cancelled_before_it_ever_runs():
    """No code of process() runs at all: the emitter still learns the request is gone."""
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        processor(ScriptedLMInvoker(["tok"] * 200, delay=0.002)).process(question="Hi", event_emitter=emitter)
    )
    task.cancel()  # before the task's first step
    events = await collect(emitter.stream(), 5)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [e.type for e in events] == ["error"]
    assert events[0].metadata["error_type"] == "CancelledError"
    assert events[0].metadata["request_id"].startswith("req_")
    await emitter.close()


# --------------------------------------------------------------------------- with the real model


async def test_slow_consumer_gets_the_full_text_from_the_real_model(local_invoker, caplog):
    handler = StreamEventHandler(max_buffer=2)
    seen: list[Event] = []

    def boom(event: Event) -> None:
        raise RuntimeError("sync handler bug")

    # only synchronous handlers: the accumulator's fast path
    emitter = EventEmitter([CallbackEventHandler(boom), handler, CallbackEventHandler(seen.append)])
    task = asyncio.create_task(
        processor(local_invoker).process(
            question="Describe Tokyo in one sentence.", event_emitter=emitter, hyperparameters=SHORT
        )
    )
    events = []
    async for e in handler.stream():
        events.append(e)
        if len(events) == 1:
            await asyncio.wait_for(asyncio.shield(task), WAIT)  # stall until the request is over
            assert len(handler) <= 2 + 2
    output = await task
    await emitter.close()
    responses = [e for e in events if e.type == "response"]
    assert "".join(e.value for e in responses) == output.text
    assert handler.coalesced > 0
    assert any(e.metadata.get("coalesced", 0) > 1 for e in responses)
    assert sum(e.metadata.get("coalesced", 1) for e in responses) == output.usage.output_tokens
    assert events[-1].type == "done"
    assert len(seen) == output.usage.output_tokens + 1  # the other handler got every delta, unmerged
    assert sum("sync handler bug" in r.getMessage() for r in caplog.records) == len(seen)


async def test_abandoning_a_stream_early_is_quiet(caplog):
    emitter = EventEmitter.with_stream_handler()
    with caplog.at_level(logging.DEBUG):
        task = asyncio.create_task(
            processor(ScriptedLMInvoker(["tok"] * 200, delay=0.002)).process(
                question="Hi", event_emitter=emitter, hyperparameters=SHORT
            )
        )
        async for event in emitter.stream():
            assert event.type == "response"
            break  # left unfinished: nothing may complain about it
        output = await asyncio.wait_for(task, WAIT)
        await emitter.close()
        gc.collect()
        await asyncio.sleep(0.05)  # let any finalizer callbacks run and log
    assert output.text
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name in ("asyncio", "lmstream")]
    assert not loud, [r.getMessage() for r in loud]
