"""The built-in handlers: callback (sync, async), print, console."""

from __future__ import annotations

import ast
import asyncio
import io
import json
from datetime import datetime

from lmstream import (
    CallbackEventHandler,
    ConsoleEventHandler,
    Event,
    EventEmitter,
    EventLevel,
    EventType,
    PrintEventHandler,
)


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
