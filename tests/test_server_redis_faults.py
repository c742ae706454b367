"""The app with the Redis registry (real redis-server, real uvicorn) under faults and hostile input:
slots held by detached answers, a Redis that refuses or dies, a chat id posted twice, odd resume
positions. Every reader gets an `error` chunk and the end of the stream; nothing leaks a slot."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("redis") if os.environ.get("CI", "").lower() != "true" else None

import redis as sync_redis  # noqa: E402

from lmstream.redis import RedisChatRegistry, connect  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.serve_helpers import ServedApp, parse_ui_stream, sse_data, wire_processor  # noqa: E402
from tests.test_server_app import chat_body, types  # noqa: E402
from tests.wire import fixtures as fx  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

WORDS = tuple(f" w{i}" for i in range(40))


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.05))
        yield srv


@pytest.fixture
def fresh(redis_server: RedisServer) -> Iterator[RedisServer]:
    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.config_set("maxmemory", "0")
    yield redis_server
    client.config_set("maxmemory", "0")
    client.close()


@pytest.fixture
def asgi_errors() -> Iterator[list[str]]:
    """What uvicorn logs as errors (its logger does not reach pytest's capture)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def served(srv: WireServer, redis_url: str, *, queue: bool = False, **kw: Any) -> ServedApp:
    return ServedApp(
        wire_processor(srv), registry=RedisChatRegistry(connect(redis_url), queue=queue, close_redis=True), **kw
    )


def test_without_queue_a_detached_answer_keeps_its_slot_until_it_ends(fresh: RedisServer, upstream: WireServer):
    statuses: list[int] = []
    with served(upstream, fresh.url, max_concurrent=3) as app, httpx.Client(timeout=10) as c:
        for i in range(30):  # POST, then leave at once
            with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id=f"d{i}")) as r:
                statuses.append(r.status_code)
        started = len(upstream.requests)
        assert app.wait(lambda: app.state.guard.active == 0, 10), "the answers never gave their slots back"
    assert statuses.count(200) == 3 and statuses.count(429) == 27
    assert started == 3 and len(upstream.requests) == 3
    assert all(req.completed for req in upstream.requests)  # leaving did not cancel them


def test_redis_refusing_gives_503_json_and_every_slot_back(fresh: RedisServer, upstream: WireServer):
    admin = sync_redis.Redis.from_url(fresh.url)
    with served(upstream, fresh.url, queue=True, max_concurrent=2) as app, httpx.Client(timeout=10) as c:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # every write is refused: OOM
        refused = [c.post(f"{app.url}/api/chat", json=chat_body(chat_id=f"o{i}")) for i in range(5)]
        admin.config_set("maxmemory", "0")
        deep: Any = "x"
        for _ in range(300):
            deep = [deep]
        too_deep = c.post(f"{app.url}/api/chat", json=chat_body(ignored=deep))
        health = c.get(f"{app.url}/healthz").json()
    admin.close()
    for r in refused:
        assert r.status_code == 503, r.text[:200]
        assert r.json()["error"]["type"] == "service_unavailable" and r.headers["retry-after"]
    assert too_deep.status_code == 400
    assert health["streams"] == 0
    assert upstream.requests == []


def test_redis_dying_mid_answer_ends_the_stream_with_an_error_chunk(upstream: WireServer):
    with RedisServer() as own, served(upstream, own.url) as app, httpx.Client(timeout=30) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="dies")) as r:
            it = sse_data(r.iter_lines())
            got = [json.loads(next(it)) for _ in range(4)]
            own.stop()
            t0 = time.monotonic()
            got += [{"type": "[DONE]"} if p == "[DONE]" else json.loads(p) for p in it]
            took = time.monotonic() - t0
        assert app.wait(lambda: app.state.guard.active == 0, 20)
        own.start()  # Redis comes back (same port): the node shuts down cleanly
    assert types(got)[-2:] == ["error", "[DONE]"], types(got)[-5:]
    assert "finish" not in types(got) and took < 20


def test_posting_the_same_chat_id_again_ends_the_first_reader_cleanly(
    fresh: RedisServer, upstream: WireServer, asgi_errors: list[str]
):
    with served(upstream, fresh.url) as app, httpx.Client(timeout=20) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="twice")) as r:
            it = sse_data(r.iter_lines())
            next(it)
            with httpx.Client(timeout=20) as other:
                with other.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="twice")) as r2:
                    second = parse_ui_stream(r2)
            first = [{"type": "[DONE]"} if p == "[DONE]" else json.loads(p) for p in it]
        assert app.wait(lambda: app.state.guard.active == 0, 10)
    assert types(first)[-1] == "[DONE]" and types(first)[-2] in ("error", "abort")
    assert types(second)[-2:] == ["finish", "[DONE]"]
    assert asgi_errors == []


def test_resume_positions_in_redis_mode_have_defined_answers(fresh: RedisServer, upstream: WireServer):
    with served(upstream, fresh.url) as app, httpx.Client(timeout=20) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="pos")) as r:
            lines = list(r.iter_lines())
        ids = [line[4:] for line in lines if line.startswith("id: ")]
        last = ids[-1]
        entry, index = last.rsplit(":", 1)
        final = c.get(f"{app.url}/api/chat/pos/stream", headers={"last-event-id": last})
        past = c.get(f"{app.url}/api/chat/pos/stream", headers={"last-event-id": f"{entry}:{int(index) + 5}"})
        ms = entry.split("-")[0]
        ahead = c.get(f"{app.url}/api/chat/pos/stream", headers={"last-event-id": f"{int(ms) + 10**6}-0:0"})
        odd = [
            c.get(f"{app.url}/api/chat/pos/stream", headers={"last-event-id": bad})
            for bad in ("1-²:0".encode(), "9" * 4301 + "-0:0", "²".encode(), "9" * 4301)
        ]
        assert app.wait(lambda: app.state.guard.active == 0, 10)
    assert final.status_code == 200 and [p for p in sse_data(iter(final.text.split("\n")))] == ["[DONE]"]
    for r in (past, ahead, *odd):
        assert r.status_code in (400, 410), (r.status_code, r.text[:200])
        assert r.json()["error"]["type"] in ("stream_gone", "invalid_request_error")


def test_resuming_a_chat_named_like_an_internal_key_is_never_a_crash(
    fresh: RedisServer, upstream: WireServer, asgi_errors: list[str]
):
    with served(upstream, fresh.url, queue=True) as app, httpx.Client(timeout=20) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="some-chat")) as queued:
            assert queued.status_code == 200  # queued (no worker runs in this test): leave at once
        for chat in ("queue", "some-chat:lease", "stop", "notify"):
            with c.stream("GET", f"{app.url}/api/chat/{chat}/stream", timeout=5) as r:
                if r.status_code == 200:
                    payloads = list(sse_data(r.iter_lines()))
                    assert payloads[-1] == "[DONE]", (chat, payloads[-3:])
                else:
                    assert r.status_code in (204, 410), (chat, r.status_code)
    assert asgi_errors == []
