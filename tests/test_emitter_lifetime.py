"""The emitter's stream off the guide's exact path: no hang, no stale event, no silent nothing."""

from __future__ import annotations

import asyncio

import pytest

from lmstream import (
    CallbackEventHandler,
    ConfigurationError,
    Event,
    EventEmitter,
    LMRequestProcessor,
    PromptBuilder,
    StreamEventHandler,
)
from lmstream.testing import ScriptedLMInvoker

WAIT = 10


def lmrp(words: list[str], delay: float = 0.0) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(user_template="{q}"), ScriptedLMInvoker(words, delay=delay))


async def collect(it, timeout: float = WAIT) -> list:
    async def run() -> list:
        return [e async for e in it]

    return await asyncio.wait_for(run(), timeout)


async def test_a_new_stream_after_an_abandoned_one_gets_only_the_new_request():
    emitter = EventEmitter.with_stream_handler()
    first = asyncio.create_task(lmrp(["old"] * 50, delay=0.001).process(q="1", event_emitter=emitter))
    async for event in emitter.stream():
        assert event.metadata["request_id"]
        break  # leave early; the first request goes on and finishes
    await asyncio.wait_for(first, WAIT)
    second = asyncio.create_task(lmrp(["new", "er"]).process(q="2", event_emitter=emitter))
    events = await collect(emitter.stream())
    out = await second
    assert [e.type for e in events] == ["response", "response", "done"]  # through its done, nothing stale
    assert "".join(e.value for e in events if e.type == "response") == out.text == "newer"
    await emitter.close()


async def test_a_new_stream_while_the_abandoned_request_still_runs_ends_with_it():
    emitter = EventEmitter.with_stream_handler()
    first = asyncio.create_task(lmrp(["old"] * 30, delay=0.002).process(q="1", event_emitter=emitter))
    async for _ in emitter.stream():
        break
    events = await collect(emitter.stream())  # no hang, and none of the abandoned request's events
    assert events == []
    await asyncio.wait_for(first, WAIT)
    await emitter.close()


async def test_a_consumer_that_read_done_but_not_the_end_leaves_no_stale_end_behind():
    emitter = EventEmitter.with_stream_handler()
    await lmrp(["a"]).process(q="1", event_emitter=emitter)  # finished before anyone read it
    async for event in emitter.stream():
        if event.type == "done":
            break
    task = asyncio.create_task(lmrp(["b"]).process(q="2", event_emitter=emitter))
    events = await collect(emitter.stream())
    await task
    assert [(e.type, e.value) for e in events] == [("response", "b"), ("done", "")]
    await emitter.close()


async def test_two_concurrent_consumers_the_second_fails_at_once():
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(lmrp(["a", "b"], delay=0.01).process(q="1", event_emitter=emitter))
    first = asyncio.create_task(collect(emitter.stream()))
    await asyncio.sleep(0.005)
    with pytest.raises(RuntimeError, match="already has a consumer"):
        await asyncio.wait_for(emitter.stream().__anext__(), 1)
    events = await first
    await task
    assert [e.type for e in events] == ["response", "response", "done"]
    await emitter.close()


async def test_process_on_a_closed_emitter_fails_at_call_time():
    emitter = EventEmitter.with_stream_handler()
    await emitter.close()
    with pytest.raises(ConfigurationError, match="closed"):
        lmrp(["a"]).process(q="1", event_emitter=emitter)
    with pytest.raises(ConfigurationError, match="closed"):
        lmrp(["a"]).stream(q="1", event_emitter=emitter)


async def test_until_closed_streams_two_requests_run_one_after_the_other():
    emitter = EventEmitter.with_stream_handler()
    proc = lmrp(["x"])

    async def both() -> None:
        await proc.process(q="1", event_emitter=emitter)
        await asyncio.sleep(0.01)  # a gap with no request running
        await proc.process(q="2", event_emitter=emitter)
        await emitter.close()

    task = asyncio.create_task(both())
    events = await collect(emitter.stream(until_closed=True))
    await task
    assert [e.type for e in events] == ["response", "done", "response", "done"]
    assert len({e.metadata["request_id"] for e in events}) == 2


async def test_by_default_the_stream_ends_after_the_first_of_two_sequential_requests():
    emitter = EventEmitter.with_stream_handler()
    proc = lmrp(["x"])

    async def both() -> None:
        await proc.process(q="1", event_emitter=emitter)
        await asyncio.sleep(0.05)
        await proc.process(q="2", event_emitter=emitter)

    task = asyncio.create_task(both())
    events = await collect(emitter.stream())
    assert [e.type for e in events] == ["response", "done"]
    await task
    rest = await collect(emitter.stream())  # the second request's events wait for the next stream
    assert [e.type for e in rest] == ["response", "done"]
    await emitter.close()


async def test_handlers_and_hooks_appended_after_construction_take_effect():
    emitter = EventEmitter()
    got: list[Event] = []
    hooked: list[str] = []

    async def hook(event: Event) -> Event:
        hooked.append(event.type)
        return event

    emitter.handlers.append(CallbackEventHandler(got.append))
    emitter.hooks.append(hook)
    await lmrp(["a", "b"]).process(q="1", event_emitter=emitter)
    assert [e.type for e in got] == ["response", "response", "done"]
    assert hooked == ["response", "response", "done"]

    later = StreamEventHandler()
    emitter.handlers.insert(0, later)
    emitter.hooks.clear()
    task = asyncio.create_task(lmrp(["c"]).process(q="2", event_emitter=emitter))
    events = await collect(emitter.stream())  # the inserted stream handler is watched too
    await task
    assert [e.value for e in events] == ["c", ""]
    assert hooked == ["response", "response", "done"]  # the cleared hook no longer runs
    await emitter.close()


async def test_add_handler_and_add_hook():
    emitter = EventEmitter()
    got: list[str] = []

    async def upper(event: Event) -> Event:
        return Event(str(event.value).upper(), event.type, event.level, event.metadata)

    emitter.add_handler(CallbackEventHandler(lambda e: got.append(e.value)))
    emitter.add_hook(upper)
    await lmrp(["ab"]).process(q="1", event_emitter=emitter)
    assert got == ["AB", ""]
