"""Events, the emitter and the built-in handlers: shapes, filters, isolation, and stream endings."""

from __future__ import annotations

import ast
import asyncio
import gc
import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from lmstream import (
    BaseEventHandler,
    CallbackEventHandler,
    ConfigurationError,
    ConsoleEventHandler,
    Event,
    EventEmitter,
    EventLevel,
    EventType,
    LMRequestProcessor,
    PrintEventHandler,
    PromptBuilder,
    ProviderError,
    StreamEventHandler,
)
from lmstream.engine.deltas import UsageDelta
from lmstream.testing import ScriptedLMInvoker

from .conftest import SHORT

WAIT = 60  # seconds; generous for a loaded 2-core machine, but a hang still fails


async def collect(stream, timeout: float = WAIT) -> list:
    async def run() -> list:
        return [e async for e in stream]

    return await asyncio.wait_for(run(), timeout)


def processor(invoker) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{question}"), invoker)


class Recorder(BaseEventHandler):
    """A custom handler as GLLM's guide writes one: only overrides async `emit`."""

    def __init__(self, name: str | None = None, fail: bool = False, raise_errors: bool = False) -> None:
        super().__init__(name, raise_errors=raise_errors)
        self.events: list[Event] = []
        self.fail = fail
        self.closed = 0

    async def emit(self, event: Event) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError(f"recorder {self.name} failed")
        self.events.append(event)

    async def close(self) -> None:
        self.closed += 1


# --------------------------------------------------------------------------- Event


def test_event_to_dict_and_json_shape():
    ev = Event("Hello", EventType.RESPONSE, EventLevel.INFO, {"request_id": "r1"})
    d = ev.to_dict()
    assert set(d) == {"id", "value", "level", "type", "timestamp", "metadata"}
    assert d["value"] == "Hello"
    assert d["level"] == "INFO"
    assert d["type"] == "response" and type(d["type"]) is str
    assert d["metadata"] == {"request_id": "r1"}
    ts = datetime.fromisoformat(d["timestamp"])
    assert ts.tzinfo is not None and ts.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60
    assert ev.timestamp == ts
    assert json.loads(ev.to_json()) == d


def test_event_dict_value_user_type_and_explicit_timestamp():
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    ev = Event({"id": "c1", "name": "f", "arguments": {"x": 1}}, "my_type", EventLevel.WARN, timestamp=when)
    d = json.loads(ev.to_json())
    assert d["value"] == {"id": "c1", "name": "f", "arguments": {"x": 1}}
    assert d["type"] == "my_type"
    assert d["level"] == "WARN"
    assert datetime.fromisoformat(d["timestamp"]) == when
    assert d["metadata"] == {}


def test_event_ids_unique_and_timestamps_non_decreasing():
    events = [Event(str(i)) for i in range(2000)]
    assert len({e.id for e in events}) == len(events)
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert all(s.tzinfo is not None for s in stamps)
    assert Event("x", id="fixed").id == "fixed"


def test_event_level_ordering_and_names():
    order = [EventLevel.TRACE, EventLevel.DEBUG, EventLevel.INFO, EventLevel.WARN, EventLevel.ERROR, EventLevel.FATAL]
    assert [int(level) for level in order] == [0, 1, 2, 3, 4, 5]
    assert order == sorted(order, key=int)
    assert EventLevel.DEBUG < EventLevel.INFO < EventLevel.ERROR
    assert [Event("", level=level).to_dict()["level"] for level in order] == [
        "TRACE",
        "DEBUG",
        "INFO",
        "WARN",
        "ERROR",
        "FATAL",
    ]


async def test_every_event_type_is_emitted_by_lmstream_or_documented_as_reserved():
    """Run every path (thinking, tools, structured data, done, error) and compare the types seen
    with the enum: what lmstream never emits must be the documented reserved set."""
    import re

    from lmstream.approval import answer
    from lmstream.engine.deltas import FinishDelta, ThinkingDelta, ToolCallDelta
    from lmstream.tools import report_progress, tool

    @tool(requires_approval=True)  # tool_approval_request
    async def echo(x: str) -> str:
        """Echo."""
        await report_progress(1, 1, "echoed")  # tool_progress
        return x

    seen: set[str] = set()

    def on_event(e: Event) -> None:
        seen.add(str(e.type))
        if e.type == EventType.TOOL_APPROVAL_REQUEST:
            answer(e.value["approval_id"], True)

    emitter = EventEmitter([CallbackEventHandler(on_event)])
    inv = ScriptedLMInvoker(
        [[ThinkingDelta("t"), ToolCallDelta(0, "c", "echo", '{"x": "1"}'), FinishDelta("tool_calls")], ['{"a": 1}']]
    )
    proc = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[echo], response_schema={"type": "object"})
    await proc.process(q="go", event_emitter=emitter)
    with pytest.raises(ProviderError):
        await LMRequestProcessor(
            PromptBuilder(user_template="{q}"), ScriptedLMInvoker([ProviderError("x", provider="p")])
        ).process(q="go", event_emitter=emitter)
    doc = EventType.__doc__ or ""
    reserved = set(re.findall(r"`(\w+)`", doc.split("Reserved", 1)[1].split(".", 1)[0]))
    assert seen | reserved == {t.value for t in EventType}
    assert not seen & reserved, "a type documented as never emitted was emitted"


# --------------------------------------------------------------------------- emitter


async def test_emitter_level_filter_drops_events_below_event_level():
    got: list[Event] = []
    emitter = EventEmitter([CallbackEventHandler(got.append)], event_level=EventLevel.WARN)
    for level in EventLevel:
        await emitter.emit(level.name, level=level)
    await emitter.emit(Event("ready-debug", level=EventLevel.DEBUG))
    await emitter.emit(Event("ready-error", level=EventLevel.ERROR))
    assert [e.value for e in got] == ["WARN", "ERROR", "FATAL", "ready-error"]


async def test_emitter_default_level_is_info():
    got: list[Event] = []
    emitter = EventEmitter([CallbackEventHandler(got.append)])
    await emitter.emit("t", level=EventLevel.TRACE)
    await emitter.emit("d", level=EventLevel.DEBUG)
    await emitter.emit("i")
    assert [e.value for e in got] == ["i"]
    assert got[0].level == EventLevel.INFO and got[0].type == "response"
    emitter = EventEmitter.with_stream_handler()
    await emitter.emit("d", level=EventLevel.DEBUG)
    await emitter.emit("w", level=EventLevel.WARN)
    await emitter.close()
    assert [e.value for e in await collect(emitter.stream())] == ["w"]


async def test_hooks_apply_in_order_before_handlers():
    seen_by_hook: list[str] = []

    async def upper(event: Event) -> Event:
        seen_by_hook.append(event.value)
        return Event(event.value.upper(), event.type, event.level, {**event.metadata, "hooked": 1})

    async def tag(event: Event) -> Event:
        event.metadata["hooked"] += 1
        return event

    sync_got: list[Event] = []
    rec = Recorder("rec")
    emitter = EventEmitter([CallbackEventHandler(sync_got.append), rec], hooks=[upper, tag])
    await emitter.emit("abc", metadata={"k": "v"})
    await emitter.emit(Event("ready"))
    assert seen_by_hook == ["abc", "ready"]
    for got in (sync_got, rec.events):
        assert [e.value for e in got] == ["ABC", "READY"]
        assert got[0].metadata == {"k": "v", "hooked": 2}


async def test_emit_value_and_ready_event():
    got: list[Event] = []
    emitter = EventEmitter([CallbackEventHandler(got.append)])
    await emitter.emit({"a": 1}, type=EventType.DATA, level=EventLevel.WARN, metadata={"m": 1})
    await emitter.emit("x", event_type="custom", event_level=EventLevel.ERROR)
    ready = Event("ready", EventType.STATUS)
    await emitter.emit(ready)
    assert got[0].value == {"a": 1} and got[0].type == "data" and got[0].level == EventLevel.WARN
    assert got[0].metadata == {"m": 1}
    assert got[1].type == "custom" and got[1].level == EventLevel.ERROR
    assert got[2] is ready


async def test_disabled_handlers_skip_by_name_but_keep_level_filter_and_hooks():
    a: list[Event] = []
    b: list[Event] = []

    async def hook(event: Event) -> Event:
        return Event(event.value + "!", event.type, event.level, event.metadata)

    emitter = EventEmitter(
        [CallbackEventHandler(a.append, name="a"), CallbackEventHandler(b.append, name="b")], hooks=[hook]
    )
    await emitter.emit("one", disabled_handlers=["a"])
    await emitter.emit("quiet", level=EventLevel.DEBUG, disabled_handlers=["a"])
    await emitter.emit(Event("two"), disabled_handlers=["b"])
    await emitter.emit("three")
    assert [e.value for e in a] == ["two!", "three!"]
    assert [e.value for e in b] == ["one!", "three!"]


async def test_several_handlers_all_receive_every_event():
    rec1, rec2 = Recorder("r1"), Recorder("r2")
    sync_got: list[str] = []
    stream = StreamEventHandler()
    emitter = EventEmitter([rec1, CallbackEventHandler(lambda e: sync_got.append(e.value)), rec2, stream])
    for i in range(5):
        await emitter.emit(str(i))
    await emitter.close()
    expected = ["0", "1", "2", "3", "4"]
    assert [e.value for e in rec1.events] == expected
    assert [e.value for e in rec2.events] == expected
    assert sync_got == expected
    assert [e.value for e in await collect(emitter.stream())] == expected
    assert rec1.closed == rec2.closed == 1


async def test_failing_handler_is_isolated_and_logged(caplog):
    got: list[str] = []

    def boom(event: Event) -> None:
        raise ValueError("sync boom")

    emitter = EventEmitter(
        [
            CallbackEventHandler(boom, name="boomer"),
            Recorder("bad", fail=True),
            CallbackEventHandler(lambda e: got.append(e.value)),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="lmstream"):
        await emitter.emit("a")
        await emitter.emit("b")
    assert got == ["a", "b"]
    messages = [r.getMessage() for r in caplog.records if r.name == "lmstream"]
    assert sum("boomer" in m and "sync boom" in m for m in messages) == 2
    assert sum("bad" in m and "recorder bad failed" in m for m in messages) == 2


async def test_failing_sync_handler_is_isolated_on_the_fast_path(caplog):
    got: list[str] = []

    def boom(event: Event) -> None:
        raise ValueError("fast boom")

    emitter = EventEmitter(
        [CallbackEventHandler(boom, name="boomer"), CallbackEventHandler(lambda e: got.append(e.value))]
    )
    with caplog.at_level(logging.ERROR, logger="lmstream"):
        await emitter.emit("a")
        await emitter.emit(Event("b"))
    assert got == ["a", "b"]
    assert sum("fast boom" in r.getMessage() for r in caplog.records if r.name == "lmstream") == 2


async def test_failing_handler_with_raise_errors_propagates():
    def boom(event: Event) -> None:
        raise ValueError("loud")

    emitter = EventEmitter([CallbackEventHandler(boom, raise_errors=True)])
    with pytest.raises(ValueError, match="loud"):
        await emitter.emit("a")
    emitter = EventEmitter([Recorder("bad", fail=True, raise_errors=True)])
    with pytest.raises(RuntimeError, match="recorder bad failed"):
        await emitter.emit("a")


async def test_callback_handler_sync_and_async():
    sync_got: list[Event] = []
    async_got: list[str] = []

    async def acb(event: Event) -> None:
        await asyncio.sleep(0)
        async_got.append(event.value)

    emitter = EventEmitter([CallbackEventHandler(sync_got.append), CallbackEventHandler(acb)])
    await emitter.emit("x")
    await emitter.emit("y")
    assert [e.value for e in sync_got] == ["x", "y"]
    assert async_got == ["x", "y"]


async def test_callback_handler_with_an_async_callable_object():
    class Collector:
        def __init__(self) -> None:
            self.values: list[str] = []

        async def __call__(self, event: Event) -> None:
            await asyncio.sleep(0)
            self.values.append(event.value)

    collector = Collector()
    emitter = EventEmitter([CallbackEventHandler(collector)])
    await emitter.emit("x")
    await emitter.emit(Event("y"))
    assert collector.values == ["x", "y"]  # awaited, not dropped as a never-awaited coroutine


async def test_print_handler_one_line_per_event():
    buf = io.StringIO()
    emitter = EventEmitter([PrintEventHandler(file=buf)])
    events = [
        Event("Hello\nworld"),
        Event({"id": "c1", "name": "f", "arguments": {}}, EventType.TOOL_CALL),
        Event("bad", EventType.ERROR, EventLevel.ERROR),
    ]
    for ev in events:
        await emitter.emit(ev)
    lines = buf.getvalue().splitlines()
    assert len(lines) == len(events)
    for line, ev in zip(lines, events, strict=True):
        ts, level, type_, value = line.split(" ", 3)
        assert datetime.fromisoformat(ts) == ev.timestamp
        assert level == EventLevel(ev.level).name
        assert type_ == str(ev.type)
        shown = ast.literal_eval(value)
        assert (shown if isinstance(ev.value, str) else json.loads(shown)) == ev.value


async def test_console_handler_inline_text_and_plain_when_not_a_tty():
    buf = io.StringIO()
    emitter = EventEmitter([ConsoleEventHandler(file=buf)])
    for tok in ["Here", " are", " some"]:
        await emitter.emit(tok)
    await emitter.emit("careful", type=EventType.STATUS)
    await emitter.emit(
        "",
        type=EventType.DONE,
        metadata={
            "usage": {"input_tokens": 3, "output_tokens": 4},
            "finish_reason": "stop",
            "duration": 1.5,
            "time_to_first_token": 0.25,
        },
    )
    out = buf.getvalue()
    assert "\x1b" not in out
    assert out == (
        "Here are some\n[status] careful\n[done] finish_reason=stop in=3 out=4 ttft=0.250s duration=1.500s\n"
    )
    coloured = io.StringIO()
    emitter = EventEmitter([ConsoleEventHandler(file=coloured, colour=True)])
    await emitter.emit("oops", type=EventType.ERROR, level=EventLevel.ERROR)
    assert coloured.getvalue() == "\x1b[31m[error] oops\x1b[0m\n"


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
