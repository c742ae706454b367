"""Truthful health and start-up (issue 31, items 12 and 14): `/healthz` is 503 `degraded` naming
what is down (Redis unreachable; with `--queue`, no worker alive) and reports the queued work;
`serve --redis` with Redis unreachable exits 2 naming the URL on the operator's terminal; a
`--queue` node refuses `/v1/stream` instead of running the model itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("redis")

from lmstream.redis import RedisChatRegistry, RedisQueue, connect
from lmstream.redis.queue import Worker
from tests.redis_server import RedisServer, free_port
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures
from tests.wire.server import Script, WireServer


@pytest.fixture
def upstream() -> WireServer:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text([" a", " b"])))
        yield srv


def test_healthz_is_degraded_while_redis_is_unreachable(upstream: WireServer) -> None:
    port = free_port()
    registry = RedisChatRegistry(connect(f"redis://127.0.0.1:{port}/0"), close_redis=True)
    with ServedApp(wire_processor(upstream), registry=registry) as app:
        r = httpx.get(f"{app.url}/healthz", timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "degraded" and body["down"] == ["redis"]
    assert str(port) not in r.text and "redis://" not in r.text


def test_healthz_sees_the_workers_heartbeats_and_the_queued_work(
    upstream: WireServer, redis_server: RedisServer
) -> None:
    registry = RedisChatRegistry(connect(redis_server.url), queue=True, close_redis=True)
    with ServedApp(wire_processor(upstream), registry=registry) as app:
        r = httpx.get(f"{app.url}/healthz", timeout=10)
        assert r.status_code == 503 and r.json()["down"] == ["workers"], r.text
        assert r.json()["workers"] == 0

        async def enqueue() -> None:
            c = connect(redis_server.url)
            await RedisQueue(c).enqueue("queued-chat", {"prompt": "hi"})
            await c.aclose()

        asyncio.run(enqueue())
        assert httpx.get(f"{app.url}/healthz", timeout=10).json()["queued"] >= 1

        stop = False

        async def run_worker() -> None:
            c = connect(redis_server.url)
            w = Worker(c, lambda job, em: asyncio.sleep(0))

            async def stopper() -> None:
                while not stop:
                    await asyncio.sleep(0.05)
                w.stop()

            await asyncio.gather(w.run(), stopper())
            await c.aclose()

        import threading

        t = threading.Thread(target=lambda: asyncio.run(run_worker()), daemon=True)
        t.start()
        try:
            deadline = time.monotonic() + 10
            while (h := httpx.get(f"{app.url}/healthz", timeout=10)).status_code != 200:
                assert time.monotonic() < deadline, h.text
                time.sleep(0.1)
            assert h.json()["status"] == "ok" and h.json()["workers"] == 1
        finally:
            stop = True
            t.join(15)


def test_serve_with_redis_unreachable_at_start_exits_2_naming_the_url() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or "src", "OPENAI_COMPATIBLE_API_KEY": "k"}
    redis_url = f"redis://:secretpw@127.0.0.1:{port}/0"
    model = ["--model", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1"]
    cmd = [sys.executable, "-m", "lmstream", "serve", "--redis", redis_url, *model, "--port", str(free_port())]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("lmstream serve kept running with Redis unreachable") from exc
    assert r.returncode == 2, r.stderr
    assert f"redis://127.0.0.1:{port}/0" in r.stderr and "secretpw" not in r.stderr


def test_a_queue_node_refuses_v1_stream_instead_of_running_the_model(
    upstream: WireServer, redis_server: RedisServer
) -> None:
    registry = RedisChatRegistry(connect(redis_server.url), queue=True, close_redis=True)
    with ServedApp(wire_processor(upstream), registry=registry) as app:
        r = httpx.post(f"{app.url}/v1/stream", json={"prompt": "hi"}, timeout=10)
    assert r.status_code == 501, r.text
    assert "/api/chat" in r.json()["error"]["message"]
    assert not upstream.requests  # nothing ran in the web node
