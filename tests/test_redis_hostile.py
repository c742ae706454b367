"""Hostile chat ids, vanished queues, restarts and a full Redis, against real processes (`lmstream
serve --redis`, `lmstream worker`), a real redis-server and the wire replay server as upstream.

Everything here goes through the command line and HTTP (or the library's defaults), so the same
tests run against any version of lmstream."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis

from lmstream.redis import RedisQueue, RedisStreamReader
from tests.redis_server import RedisServer
from tests.test_redis_server import WORDS, body, messages, node, text_of, worker
from tests.wire import fixtures
from tests.wire.server import Script, WireServer

#: the keys lmstream may write for a chat (see `Keys`); everything else is lmstream's own
CHAT_FAMILIES = ("chat", "lease", "stop")
QUEUE_KEY = "lmstream:q:jobs"
WORKERS_KEY = "lmstream:q:workers"  # the workers' heartbeats (for /healthz)


def chat_keys(chat_id: str) -> set[str]:
    return {f"lmstream:{family}:{chat_id}" for family in CHAT_FAMILIES}


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(WORDS), delay_between=0.03))
        yield srv


def complete(url: str, chat_id: str, timeout: float = 30) -> list[tuple[str | None, str]]:
    with httpx.Client(timeout=timeout) as c, c.stream("POST", f"{url}/api/chat", json=body(chat_id)) as r:
        assert r.status_code == 200, r.read()
        return messages(r)


class KeyEvents:
    """Every (event, key) Redis reports while it runs (keyspace notifications, all classes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._listen()), daemon=True)

    async def _listen(self) -> None:
        c = aioredis.Redis.from_url(self.url)
        await c.config_set("notify-keyspace-events", "KEA")
        ps = c.pubsub()
        await ps.psubscribe("__keyevent@0__:*")
        self._ready.set()
        while not self._stop.is_set():
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if msg:
                self.seen.append((msg["channel"].decode().split(":", 1)[1], msg["data"].decode()))
        await ps.aclose()
        await c.aclose()

    def __enter__(self) -> KeyEvents:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # the last notifications
        self._stop.set()
        self._thread.join(10)


def test_chat_ids_never_name_an_internal_key(upstream: WireServer) -> None:
    """Ids shaped like lmstream's own keys (the queue, another chat's lease or stop key) touch
    only their own chat's keys: the queue and its group survive, the victim's answer is whole."""
    hostile = ["queue", "victim:lease", "victim:stop", "q:jobs", "lease:victim", "chat:victim", "notify"]
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        n, url = node(srv.url, upstream, "--queue")
        try:
            assert text_of(complete(url, "warm")) == "".join(WORDS)  # the queue and its group exist
            victim: dict[str, Any] = {}

            def follow_victim() -> None:
                victim["msgs"] = complete(url, "victim")

            with KeyEvents(srv.url) as events:
                t = threading.Thread(target=follow_victim)
                t.start()
                time.sleep(0.3)  # the victim streams while the hostile ids are posted
                for chat_id in hostile:
                    assert text_of(complete(url, chat_id)) == "".join(WORDS), chat_id
                t.join(30)
            assert text_of(victim["msgs"]) == "".join(WORDS), "the victim's answer was cut"
            assert w.p.poll() is None, "the worker died"
            allowed = set().union(*(chat_keys(i) for i in [*hostile, "victim"]))
            queue_events = {"xadd", "xtrim", "xdel", "xgroup-createconsumer", "xclaim", "xautoclaim"}
            beat_events = {"zadd", "expire", "zrembyscore", "del"}
            own = {(QUEUE_KEY, e) for e in queue_events} | {(WORKERS_KEY, e) for e in beat_events}
            stray = [(e, k) for e, k in events.seen if k not in allowed and (k, e) not in own]
            assert stray == [], f"keys outside the chat namespace were touched: {stray}"
            assert any(k == "lmstream:chat:queue" for _, k in events.seen), "the hostile chats did stream"
            with httpx.Client(timeout=10) as c:
                assert c.get(f"{url}/api/chat/queue/stream").status_code == 200  # its own replay, not the queue
        finally:
            n.kill()
            w.kill()


def test_resuming_a_chat_named_after_the_queue_is_204_not_500(upstream: WireServer) -> None:
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        n, url = node(srv.url, upstream, "--queue")
        try:
            assert text_of(complete(url, "warm")) == "".join(WORDS)
            with httpx.Client(timeout=10) as c:
                for chat_id in ("queue", "q:jobs", "warm:lease", "notify"):
                    r = c.get(f"{url}/api/chat/{chat_id}/stream")
                    assert r.status_code == 204, (chat_id, r.status_code, r.text[:300])
        finally:
            n.kill()
            w.kill()


async def _queue_key(c: aioredis.Redis) -> str:
    """The stream the workers read, found by its consumer group (whatever it is called)."""
    async for key in c.scan_iter(_type="stream"):
        if any(g["name"] == b"workers" for g in await c.xinfo_groups(key)):
            return str(key.decode())
    raise AssertionError("no queue stream with the group 'workers'")


@pytest.mark.parametrize("how", ["del", "group", "flushall"])
async def test_worker_survives_its_queue_vanishing(upstream: WireServer, how: str) -> None:
    """FLUSHALL, eviction (a DEL, as Redis sees it) or a destroyed group while the worker waits
    in XREADGROUP: it recreates the group and runs the next job."""
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        c = aioredis.Redis.from_url(srv.url, socket_connect_timeout=2, socket_timeout=10)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        key = await _queue_key(c)
                        break
                    except AssertionError:
                        await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # the worker blocks in XREADGROUP
            if how == "del":
                await c.delete(key)
            elif how == "group":
                await c.xgroup_destroy(key, "workers")
            else:
                await c.flushall()
            await asyncio.sleep(1.5)
            assert w.p.poll() is None, f"the worker exited: {w.p.stderr.read() if w.p.stderr else ''}"
            await RedisQueue(c).enqueue("after", {"prompt": "hi"})
            async with asyncio.timeout(20):
                items = [it async for it in RedisStreamReader(c).read("after")]
            assert items[-1].event.type == "done"
            assert "".join(it.event.value for it in items if it.event.type == "response") == "".join(WORDS)
            assert w.p.poll() is None
        finally:
            await c.aclose()
            w.kill()


def test_first_chat_after_a_redis_restart_succeeds(upstream: WireServer) -> None:
    """Stale pooled connections after a restart are retried on fresh ones: the next chat runs."""
    with RedisServer() as srv:
        n, url = node(srv.url, upstream)
        try:
            assert text_of(complete(url, "before")) == "".join(WORDS)
            srv.restart()
            assert text_of(complete(url, "after")) == "".join(WORDS)
            with httpx.Client(timeout=10) as c:
                assert c.get(f"{url}/api/chat/after/stream").status_code == 200
                assert c.post(f"{url}/api/chat/after/stop", json={}).json() == {"stopped": False}
        finally:
            n.kill()


def test_first_queued_chat_after_a_redis_restart_runs_on_the_worker(upstream: WireServer) -> None:
    """The worker's stale connections too: the job runs (within seconds), not "worker died" after 60 s."""
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        n, url = node(srv.url, upstream, "--queue")
        try:
            assert text_of(complete(url, "before")) == "".join(WORDS)
            srv.restart()
            time.sleep(0.5)
            t0 = time.monotonic()
            msgs = complete(url, "after", timeout=20)
            assert text_of(msgs) == "".join(WORDS), msgs[-3:]
            assert time.monotonic() - t0 < 15
            assert w.p.poll() is None
        finally:
            n.kill()
            w.kill()


def test_a_finished_job_leaves_nothing_in_the_queue(upstream: WireServer) -> None:
    """Prompts and attachments do not outlive their job: it is deleted once acknowledged."""
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        n, url = node(srv.url, upstream, "--queue")
        try:
            for i in range(3):
                assert text_of(complete(url, f"j{i}")) == "".join(WORDS)
            time.sleep(0.3)

            async def queue_len() -> tuple[int, int]:
                c = aioredis.Redis.from_url(srv.url)
                try:
                    key = await _queue_key(c)
                    return int(await c.xlen(key)), int((await c.xpending(key, "workers"))["pending"])
                finally:
                    await c.aclose()

            assert asyncio.run(queue_len()) == (0, 0)
        finally:
            n.kill()
            w.kill()


def test_redis_out_of_memory_on_enqueue_is_503_json_then_recovers(upstream: WireServer) -> None:
    with RedisServer() as srv:
        w = worker(srv.url, upstream)
        n, url = node(srv.url, upstream, "--queue")

        async def config(**kv: str) -> None:
            c = aioredis.Redis.from_url(srv.url)
            for k, v in kv.items():
                await c.config_set(k.replace("_", "-"), v)
            await c.aclose()

        try:
            assert text_of(complete(url, "warm")) == "".join(WORDS)
            asyncio.run(config(maxmemory_policy="noeviction", maxmemory="1"))
            with httpx.Client(timeout=20) as c:
                for _ in range(3):
                    r = c.post(f"{url}/api/chat", json=body("oom"))
                    assert r.status_code == 503, (r.status_code, r.text[:300])
                    err = r.json()["error"]
                    assert err["type"] == "service_unavailable" and "OutOfMemoryError" in err["message"], err
                    assert "lmstream:" not in err["message"], "no internal key names in what a browser sees"
            asyncio.run(config(maxmemory="0"))
            assert text_of(complete(url, "after")) == "".join(WORDS)
            assert w.p.poll() is None
        finally:
            n.kill()
            w.kill()


@pytest.mark.parametrize("where", ["same node", "other node"])
def test_reposting_a_chat_ends_the_earlier_answer_properly(upstream: WireServer, where: str) -> None:
    """A newer request of the same chat replaces the stream. The reader of the older answer gets
    the end of its stream with exactly one terminal chunk, never a broken response."""
    with RedisServer() as srv:
        a, a_url = node(srv.url, upstream)
        b, b_url = node(srv.url, upstream) if where == "other node" else (None, a_url)
        try:
            first: dict[str, Any] = {}
            streaming = threading.Event()

            def read_first() -> None:
                def lines() -> Iterator[str]:
                    deltas = 0
                    for line in r.iter_lines():
                        deltas += '"text-delta"' in line
                        if deltas >= 3:
                            streaming.set()
                        yield line

                with httpx.Client(timeout=30) as c, c.stream("POST", f"{a_url}/api/chat", json=body("same")) as r:
                    first["msgs"] = messages(lines())

            t = threading.Thread(target=read_first)
            t.start()
            assert streaming.wait(20), "the first answer never streamed"
            second = complete(b_url, "same")
            t.join(30)
            assert text_of(second) == "".join(WORDS)
            assert first["msgs"][-1][1] == "[DONE]", first["msgs"][-3:]
            chunks = [json.loads(d) for _, d in first["msgs"] if d != "[DONE]"]
            ends = [ch["type"] for ch in chunks if ch["type"] in ("error", "abort", "finish")]
            # on the node that ran both the older answer may also be stopped before the newer takes over
            assert ends == ["error"] or (where == "same node" and ends == ["abort"]), chunks[-3:]
        finally:
            a.kill()
            if b is not None:
                b.kill()
