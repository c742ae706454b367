"""The standing guard of the Redis scale-out: two web nodes (`lmstream serve --redis --queue`), two
workers and a real redis-server, while answers stream from the wire replay server. A worker is
SIGKILLed, redis-server is SIGKILLed and restarted (empty), FLUSHALL runs, and Redis hits
`maxmemory` under `noeviction`. Afterwards every answer either completed or ended with exactly one
`error` chunk its reader received (never a broken or silent response), no worker process
exited, and the next 20 answers all complete.

Set LMSTREAM_CHAOS_RUNS=5 to run it five times in a row."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis

from tests.redis_server import RedisServer, free_port
from tests.test_redis_server import Proc, body, node
from tests.wire import fixtures
from tests.wire.server import Script, WireServer

WORDS = [f" c{i}" for i in range(40)]
PACE = 0.06  # seconds between upstream chunks: a 2.4 s answer
RUNS = int(os.environ.get("LMSTREAM_CHAOS_RUNS", "1"))


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(WORDS), delay_between=PACE))
        yield srv


def start_worker(redis_url: str, upstream: WireServer) -> Proc:
    return Proc([
        "worker", "--redis", redis_url, "--lease", "2", "--concurrency", "16",
        "--model", "openai-compatible/wire-model", "--base-url", f"{upstream.base_url}/v1",
    ])  # fmt: skip


class Outcome:
    """What one reader of one answer got."""

    def __init__(self, chat_id: str) -> None:
        self.chat_id = chat_id
        self.chunks: list[dict[str, Any]] = []
        self.done = False  # the stream's `[DONE]`
        self.status = 0
        self.failure: str | None = None  # the response broke, or did not start

    @property
    def text(self) -> str:
        return "".join(c.get("delta", "") for c in self.chunks if c.get("type") == "text-delta")

    @property
    def errors(self) -> int:
        return sum(1 for c in self.chunks if c.get("type") == "error")

    @property
    def completed(self) -> bool:
        finished = any(c.get("type") == "finish" for c in self.chunks)
        return self.done and finished and self.errors == 0 and self.text == "".join(WORDS)

    @property
    def one_error(self) -> bool:
        return self.done and self.errors == 1 and self.chunks[-1].get("type") == "error"

    def __repr__(self) -> str:
        tail = [c.get("type") for c in self.chunks[-3:]]
        return f"<{self.chat_id} {self.status} done={self.done} errors={self.errors} tail={tail} {self.failure}>"


async def chat(client: httpx.AsyncClient, url: str, chat_id: str, started: asyncio.Event) -> Outcome:
    out = Outcome(chat_id)
    try:
        async with client.stream("POST", f"{url}/api/chat", json=body(chat_id)) as r:
            out.status = r.status_code
            if r.status_code != 200:
                out.failure = (await r.aread()).decode()[:200]
                return out
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    out.done = True
                    continue
                out.chunks.append(json.loads(data))
                if out.chunks[-1].get("type") == "text-delta":
                    started.set()
    except httpx.HTTPError as exc:
        out.failure = f"{type(exc).__name__}: {exc}"
    finally:
        started.set()
    return out


async def wave(
    client: httpx.AsyncClient, urls: list[str], tag: str, n: int, tasks: list[asyncio.Task[Outcome]]
) -> None:
    """Start `n` answers, alternating between the nodes; return once every one of them streams
    (a fault while a POST is still being taken would be a 503 before any stream: another case)."""
    started = [asyncio.Event() for _ in range(n)]
    for i in range(n):
        tasks.append(asyncio.create_task(chat(client, urls[i % len(urls)], f"{tag}-{i}", started[i])))
    async with asyncio.timeout(20):
        for ev in started:
            await ev.wait()


async def redis_up(url: str) -> None:
    async with asyncio.timeout(10):
        while True:
            c = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
            try:
                await c.ping()
                return
            except Exception:
                await asyncio.sleep(0.05)
            finally:
                await c.aclose()


async def command(url: str, *args: Any) -> None:
    c = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await c.execute_command(*args)
    finally:
        await c.aclose()


async def chaos_round(srv: RedisServer, urls: list[str], workers: list[Proc], upstream: WireServer) -> float:
    t0 = time.monotonic()
    tasks: list[asyncio.Task[Outcome]] = []
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5), limits=limits) as client:
        await wave(client, urls, "a", 5, tasks)
        victim = workers.pop(0)
        victim.kill()  # SIGKILL a worker mid-answer; a fresh one takes its place
        workers.append(await asyncio.to_thread(start_worker, srv.url, upstream))
        await wave(client, urls, "b", 5, tasks)
        srv.stop()  # SIGKILL redis-server mid-answer, then start it again: empty
        await asyncio.sleep(0.3)
        srv.start()
        await redis_up(srv.url)
        await wave(client, urls, "c", 5, tasks)
        await command(srv.url, "FLUSHALL")
        await wave(client, urls, "d", 5, tasks)
        await command(srv.url, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        await command(srv.url, "CONFIG", "SET", "maxmemory", "1")  # every write refused: OOM
        await asyncio.sleep(1.5)
        await command(srv.url, "CONFIG", "SET", "maxmemory", "0")
        async with asyncio.timeout(40):
            outcomes = await asyncio.gather(*tasks)
        for o in outcomes:
            assert o.failure is None and o.status == 200, o
            assert o.completed or o.one_error, o
        dead = [w for w in workers if w.p.poll() is not None]
        assert not dead, f"{len(dead)} worker(s) exited"
        # afterwards: the next 20 answers all complete
        after: list[asyncio.Task[Outcome]] = []
        await wave(client, urls, "next", 20, after)
        async with asyncio.timeout(40):
            fresh = await asyncio.gather(*after)
        assert all(o.completed for o in fresh), [o for o in fresh if not o.completed]
        assert all(w.p.poll() is None for w in workers)
    reasons = Counter(str(o.chunks[-1].get("errorText", ""))[:70] for o in outcomes if o.one_error)
    print(
        f"chaos round: {sum(o.completed for o in outcomes)} completed, {sum(o.one_error for o in outcomes)} "
        f"ended with one error, then 20/20 complete, {time.monotonic() - t0:.1f} s; errors: {dict(reasons)}",
        file=sys.stderr,
    )
    return time.monotonic() - t0


async def test_chaos_faults_while_answers_stream(upstream: WireServer) -> None:
    with RedisServer(free_port()) as srv:
        workers = [start_worker(srv.url, upstream) for _ in range(2)]
        a, a_url = node(srv.url, upstream, "--queue")
        b, b_url = node(srv.url, upstream, "--queue")
        try:
            for _ in range(RUNS):
                await chaos_round(srv, [a_url, b_url], workers, upstream)
        finally:
            for p in (a, b, *workers):
                p.kill()
