"""Redis under attack (issue 31, items 9-11): a stall shorter than the documented lease ends no
answer, a stop sent while the stop subscription reconnects is still obeyed, and no client is
ever told Redis's address (an out-of-range Last-Event-ID is a 410, Redis down a plain 503)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis

from lmstream.events import Event, EventLevel, EventType
from lmstream.redis import RedisChatRegistry, RedisStreamReader, connect
from lmstream.redis.options import RedisOptions
from lmstream.redis.producer import RedisEventHandler
from lmstream.redis.runner import ChatRunner, request_stop
from tests.redis_server import RedisServer, free_port
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures
from tests.wire.server import Script, WireServer


async def _client(url: str) -> Any:
    c = aioredis.Redis.from_url(url)
    await c.flushdb()
    return c


async def test_the_lease_in_redis_is_the_documented_lease(redis_server: RedisServer) -> None:
    r = await _client(redis_server.url)
    h = RedisEventHandler(r, "c", options=RedisOptions(lease=10))
    await h.start()
    assert await r.pttl("lmstream:lease:c") > 9_500  # not 0.8 x 10 s
    h.emit_nowait(Event("done", EventType.DONE, EventLevel.INFO, {}))
    await h.aclose()
    await r.aclose()


async def test_a_redis_stall_shorter_than_the_lease_ends_no_answer(redis_server: RedisServer) -> None:
    """Redis stops answering for 6.5 s (SIGSTOP) just before the producer's lease renewal is due:
    the answer goes on and every reader gets it whole, no LeaseExpiredError/WorkerLostError."""
    r = await _client(redis_server.url)
    opts = RedisOptions(lease=10)
    h = RedisEventHandler(r, "stall", options=opts)
    await h.start()
    reader = RedisStreamReader(r, options=opts)
    got: list[Event] = []

    async def read() -> None:
        async for ev in reader.events("stall"):
            got.append(ev)

    reading = asyncio.create_task(read())
    stalled = asyncio.Event()

    async def produce() -> None:
        i = 0
        while not stalled.is_set():  # tokens keep coming (and queue up while Redis is stopped)
            h.emit_nowait(Event(f"t{i} ", EventType.RESPONSE, EventLevel.INFO, {}))
            i += 1
            await asyncio.sleep(0.05)
        for j in range(5):
            h.emit_nowait(Event(f"after{j} ", EventType.RESPONSE, EventLevel.INFO, {}))
            await asyncio.sleep(0.05)
        h.emit_nowait(Event("ok", EventType.DONE, EventLevel.INFO, {}))

    producing = asyncio.create_task(produce())
    probe = aioredis.Redis.from_url(redis_server.url)
    full = await probe.pttl("lmstream:lease:stall")
    deadline = time.monotonic() + 10
    while await probe.pttl("lmstream:lease:stall") > full - 2_300:  # the renewal is about due
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(6.5)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    stalled.set()
    await asyncio.wait_for(producing, 20)
    await h.aclose()
    await asyncio.wait_for(reading, 20)
    await probe.aclose()
    await r.aclose()
    assert got[-1].type == EventType.DONE, [e.value for e in got[-3:]]
    assert not [e for e in got if e.type == EventType.ERROR]


async def test_a_stop_sent_while_the_stop_subscription_reconnects_is_obeyed(redis_server: RedisServer) -> None:
    r = await _client(redis_server.url)
    runner = ChatRunner(r)
    await runner.start()
    ran_to_end = asyncio.Event()

    async def long_answer(emitter: Any) -> None:
        for i in range(60):
            await emitter.emit(f"t{i}", type=EventType.RESPONSE)
            await asyncio.sleep(0.1)
        ran_to_end.set()

    task = await runner.launch("c", long_answer)
    await asyncio.sleep(0.3)
    admin = aioredis.Redis.from_url(redis_server.url)
    await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # the subscription drops
    heard = await request_stop(r, "c")  # the broadcast goes out while nobody listens
    assert heard == 0
    t0 = time.monotonic()
    handler = await asyncio.wait_for(task, 10)
    assert not ran_to_end.is_set() and handler.ended
    assert time.monotonic() - t0 < 3, "the stop was not obeyed"
    events = [ev async for ev in RedisStreamReader(r).events("c")]
    assert events[-1].type == EventType.ERROR and events[-1].metadata.get("error_type") == "CancelledError"
    assert 3 <= len(events) < 40, len(events)
    await admin.aclose()
    await runner.aclose()
    await r.aclose()


def _no_address(text: str, port: int) -> None:
    assert "redis://" not in text and str(port) not in text and "127.0.0.1" not in text, text


def test_an_out_of_range_last_event_id_is_410_and_never_names_redis(redis_server: RedisServer) -> None:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text([" a", " b"])))
        registry = RedisChatRegistry(connect(redis_server.url), close_redis=True)
        with ServedApp(wire_processor(srv), registry=registry) as app, httpx.Client(timeout=10) as c:
            for last in ("99999999999999999999-1:0", "1-99999999999999999999:0", "18446744073709551616-0:0"):
                r = c.get(f"{app.url}/api/chat/x/stream", headers={"last-event-id": last})
                assert r.status_code == 410, (last, r.status_code, r.text)
                _no_address(r.text, redis_server.port)


def test_with_redis_down_no_answer_names_its_address() -> None:
    port = free_port()  # nothing listens there
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text([" a"])))
        registry = RedisChatRegistry(connect(f"redis://127.0.0.1:{port}/0"), close_redis=True)
        with ServedApp(wire_processor(srv), registry=registry) as app, httpx.Client(timeout=30) as c:
            chat = {"id": "c1", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
            answers = [
                c.post(f"{app.url}/api/chat", json=chat),
                c.post(f"{app.url}/api/chat/c1/stop", json={}),
                c.get(f"{app.url}/api/chat/c1/stream"),
                c.get(f"{app.url}/api/chat/c1/stream", headers={"last-event-id": "1-0:0"}),
            ]
            for r in answers:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                _no_address(r.text, port)
