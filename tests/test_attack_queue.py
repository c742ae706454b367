"""Queue floods (issue 31, item 4): a client that posts and leaves cannot fill Redis (the queue
is bounded in jobs and bytes, a new job past them gets 429), and a worker that comes late drops
the jobs whose wait expired before it calls the model."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis

from lmstream.redis import RedisChatRegistry, RedisQueue, connect
from lmstream.redis.options import RedisOptions
from lmstream.redis.queue import Worker
from tests.redis_server import RedisServer
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire.server import WireServer


async def test_the_queue_is_bounded_in_jobs_and_in_bytes(redis_server: RedisServer) -> None:
    from lmstream.redis.queue import QueueFullError

    r = aioredis.Redis.from_url(redis_server.url)
    await r.flushdb()
    q = RedisQueue(r, options=RedisOptions(queue_max_jobs=5))
    for i in range(5):
        await q.enqueue(f"c{i}", {"prompt": "hi"})
    with pytest.raises(QueueFullError, match="5 jobs"):
        await q.enqueue("c5", {"prompt": "hi"})
    await r.flushdb()
    q = RedisQueue(r, options=RedisOptions(queue_max_bytes=400_000))
    refused = 0
    for i in range(40):  # 40 jobs of 50 kB: 2 MB asked
        try:
            await q.enqueue(f"b{i}", {"prompt": "x" * 50_000})
        except QueueFullError:
            refused += 1
    assert refused >= 30
    assert await r.memory_usage("lmstream:q:jobs", samples=0) <= 400_000 + 60_000
    await r.aclose()


def test_a_full_queue_is_429_to_the_client(redis_server: RedisServer) -> None:
    asyncio.run(_flush(redis_server.url))
    registry = RedisChatRegistry(connect(redis_server.url), queue=True, close_redis=True,
                                 options=RedisOptions(queue_max_jobs=3))  # fmt: skip
    with WireServer() as srv, ServedApp(wire_processor(srv), registry=registry) as app:
        statuses = []
        for i in range(5):  # post and leave: nobody reads, no worker runs them
            chat = {"id": f"c{i}", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
            with httpx.Client(timeout=10) as c, c.stream("POST", f"{app.url}/api/chat", json=chat) as r:
                statuses.append(r.status_code)
                if r.status_code == 429:
                    body = r.read()
                    assert b"queue is full" in body and b"redis://" not in body
    assert statuses == [200, 200, 200, 429, 429], statuses


async def _flush(url: str) -> None:
    r = aioredis.Redis.from_url(url)
    await r.flushdb()
    await r.aclose()


def test_a_late_worker_drops_expired_jobs_without_calling_the_model(redis_server: RedisServer) -> None:
    opts = RedisOptions(queue_timeout=0.3)
    calls: list[Any] = []

    async def scenario() -> int:
        r = aioredis.Redis.from_url(redis_server.url)
        await r.flushdb()
        q = RedisQueue(r, options=opts)
        for i in range(10):
            await q.enqueue(f"late{i}", {"prompt": "hi"})
        await asyncio.sleep(0.6)  # every job's wait for a worker expired (their readers were told)

        async def handle(job: dict[str, Any], emitter: Any) -> None:
            calls.append(job)  # the model call

        w = Worker(r, handle, options=opts)
        running = asyncio.create_task(w.run())
        deadline = time.monotonic() + 15
        while await r.xlen("lmstream:q:jobs") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        left = int(await r.xlen("lmstream:q:jobs"))
        w.stop()
        await asyncio.wait_for(running, 10)
        await r.aclose()
        return left

    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.setdefault("left", asyncio.run(scenario())))
    t.start()
    t.join(40)
    assert result.get("left") == 0, result
    assert calls == [], f"{len(calls)} expired jobs reached the model"


def test_a_node_holds_a_slot_per_queued_chat_until_it_ends(redis_server: RedisServer) -> None:
    """Posting and leaving queues at most --max-concurrent chats per node; their slots come back
    when their streams end (here: nobody took them within the queue timeout)."""
    asyncio.run(_flush(redis_server.url))
    opts = RedisOptions(queue_timeout=1.0, lease=2.0)
    registry = RedisChatRegistry(connect(redis_server.url), queue=True, close_redis=True, options=opts)
    with WireServer() as srv, ServedApp(wire_processor(srv), registry=registry, max_concurrent=3) as app:
        statuses = []
        for i in range(5):
            chat = {"id": f"n{i}", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
            with httpx.Client(timeout=10) as c, c.stream("POST", f"{app.url}/api/chat", json=chat) as r:
                statuses.append(r.status_code)  # and leave at once
        assert statuses == [200, 200, 200, 429, 429], statuses
        assert app.wait(lambda: app.state.guard.active == 0, 20), app.state.guard.active
