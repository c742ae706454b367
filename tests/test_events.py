"""Events and the emitter: shapes, ids, levels, hooks, filters, handler isolation."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from lmstream import (
    CallbackEventHandler,
    Event,
    EventEmitter,
    EventLevel,
    EventType,
    LMRequestProcessor,
    PromptBuilder,
    ProviderError,
    StreamEventHandler,
)
from lmstream.testing import ScriptedLMInvoker

from .events_support import Recorder, collect

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

    from lmstream import FallbackLMInvoker
    from lmstream.approval import answer
    from lmstream.engine.deltas import FileDelta, FinishDelta, StatusDelta, ThinkingDelta, ToolCallDelta
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
        [
            [
                StatusDelta("queued", 1),  # status (the embedded engine's queue)
                StatusDelta("running"),
                ThinkingDelta("t"),
                FileDelta("f", "image/png", data=""),
                ToolCallDelta(0, "c", "echo", '{"x": "1"}'),
                FinishDelta("tool_calls"),
            ],
            ['{"a": 1}'],
        ]
    )
    proc = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[echo], response_schema={"type": "object"})
    await proc.process(q="go", event_emitter=emitter)
    with pytest.raises(ProviderError):
        await LMRequestProcessor(
            PromptBuilder(user_template="{q}"), ScriptedLMInvoker([ProviderError("x", provider="p")])
        ).process(q="go", event_emitter=emitter)
    broken = ScriptedLMInvoker([["par", ProviderError("cut", provider="p", retryable=True)]])
    chain = FallbackLMInvoker([broken, ScriptedLMInvoker(["whole"])], on_midstream_failure="restart")  # reset
    await LMRequestProcessor(PromptBuilder(user_template="{q}"), chain).process(q="go", event_emitter=emitter)
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
