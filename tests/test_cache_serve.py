"""The response cache behind `lmstream serve` (issue 29): a real subprocess with two API keys in
front of an upstream that counts its requests (tests/wire/server.py).

Each key is a tenant: its answers are never served to the other. `/v1/stream`, `/api/chat` and
`/v1/chat/completions` share entries; `Cache-Control: no-cache` bypasses the cache; `/healthz`
shows hits, misses, joins and bytes held; the page marks a replayed answer "cached".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lmstream import ResponseCache
from tests.serve_helpers import ServedApp, parse_ui_stream, sse_data, wire_processor
from tests.test_server_cli import serving
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

TEXT = ("Tenants", " never", " share", " answers", ".")
KEYS = ("sk-tenant-a", "sk-tenant-b")


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    srv = WireServer(repeat_last=True)
    srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, model="wire-model")))
    srv.start_in_thread()
    try:
        yield srv
    finally:
        srv.stop()


def _auth(key: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", **headers}


def _v1_stream(url: str, key: str, prompt: str = "Who shares?", **headers: str) -> list[dict[str, Any]]:
    body = {"prompt": prompt, "hyperparameters": {"temperature": 0}}
    with httpx.stream("POST", f"{url}/v1/stream", json=body, headers=_auth(key, **headers), timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        return [json.loads(p) for p in sse_data(resp.iter_lines())]


def _done(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "done", events[-1]
    return events[-1]


def _cache_of(events: list[dict[str, Any]]) -> Any:
    value = _done(events)["value"]
    return value.get("cache") if isinstance(value, dict) else None


def test_two_keys_are_two_tenants_and_every_route_shares_one_entry(upstream: WireServer) -> None:
    args = ("--model", "openai-compatible/wire-model", "--base-url", f"{upstream.base_url}/v1")
    with serving(*args, "--api-key", KEYS[0], "--api-key", KEYS[1], "--cache", "memory") as url:
        a1 = _v1_stream(url, KEYS[0])
        assert len(upstream.requests) == 1 and _cache_of(a1) == {"hit": False, "joined": False, "age": None}
        a2 = _v1_stream(url, KEYS[0])
        assert len(upstream.requests) == 1 and _cache_of(a2)["hit"] is True
        assert [e["value"] for e in a2 if e["type"] == "response"] == list(TEXT)

        b1 = _v1_stream(url, KEYS[1])  # the other key: its own answer, never tenant A's
        assert len(upstream.requests) == 2 and _cache_of(b1)["hit"] is False
        assert _cache_of(_v1_stream(url, KEYS[1]))["hit"] is True and len(upstream.requests) == 2

        fresh = _v1_stream(url, KEYS[0], **{"cache-control": "no-cache"})  # HTTP's own bypass
        assert len(upstream.requests) == 3 and _cache_of(fresh) is None

        # the page's route, the same question: tenant A's entry, replayed as UI chunks
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Who shares?"}]}
        chat = {"id": "c1", "messages": [message], "hyperparameters": {"temperature": 0}}
        with httpx.stream("POST", f"{url}/api/chat", json=chat, headers=_auth(KEYS[0]), timeout=30) as resp:
            assert resp.status_code == 200
            chunks = parse_ui_stream(resp)
        usage = [c for c in chunks if c["type"] == "data-usage"][-1]["data"]
        assert usage["cache"]["hit"] is True and len(upstream.requests) == 3
        assert "".join(c.get("delta", "") for c in chunks if c["type"] == "text-delta") == "".join(TEXT)

        # the OpenAI-compatible route, the same question: the same entry again
        completion = {
            "model": "openai-compatible/wire-model",
            "messages": [{"role": "user", "content": "Who shares?"}],
            "temperature": 0,
        }
        resp = httpx.post(f"{url}/v1/chat/completions", json=completion, headers=_auth(KEYS[1]), timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == "".join(TEXT)
        assert resp.headers.get("x-lmstream-cache") == "hit" and len(upstream.requests) == 3

        health = httpx.get(f"{url}/healthz", timeout=5).json()["cache"]
        assert health["store"] == "memory" and health["misses"] == 2 and health["hits"] == 4
        assert health["joins"] == 0 and health["bytes"] > 0 and health["entries"] == 2
        assert "sk-tenant" not in json.dumps(health)

        assert httpx.get(f"{url}/healthz", headers=_auth("sk-wrong"), timeout=5).status_code == 200
        wrong = httpx.post(f"{url}/v1/stream", json={"prompt": "x"}, headers=_auth("sk-wrong"), timeout=5)
        assert wrong.status_code == 401


def test_cache_flags_are_checked_before_anything_starts() -> None:
    import subprocess

    from tests.test_server_cli import env, serve_cmd

    proc = subprocess.run(serve_cmd("--cache", "redis"), capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 2 and "--cache redis needs --redis URL" in proc.stderr
    proc = subprocess.run(
        serve_cmd("--cache", "memory", "--cache-pacing", "fast"), capture_output=True, text=True, timeout=60, env=env()
    )
    assert proc.returncode == 2 and "pacing" in proc.stderr and "Traceback" not in proc.stderr


def test_the_page_marks_a_replayed_answer_cached(page: Any, upstream: WireServer) -> None:
    proc = wire_processor(upstream)
    proc.cache, proc.cache_sampled = ResponseCache(), True  # the page sends no temperature
    with ServedApp(proc) as app:
        for n in (1, 2):
            page.goto(app.url + "/")
            page.evaluate("() => localStorage.clear()")
            page.goto(app.url + "/")
            box = page.locator("textarea")
            box.fill("Who shares?")
            box.press("Enter")
            page.locator(".msg.assistant .stats").wait_for(timeout=15_000)
            stats = page.locator(".msg.assistant .stats").inner_text()
            assert ("cached" in stats) == (n == 2), stats
            assert page.locator(".msg.assistant .md").inner_text() == "".join(TEXT)
    assert len(upstream.requests) == 1


def test_the_listening_socket_sends_small_writes_at_once() -> None:
    """Found measuring cache hits through `lmstream serve`: every request of a kept-alive
    connection but its first waited ~40 ms for its body (Nagle's algorithm against the client's
    delayed ACK). Accepted connections inherit TCP_NODELAY from the listening socket."""
    import socket

    from lmstream.server.cli import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        port = sock.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = sock.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # inherited (Linux)
        finally:
            accepted.close()
            client.close()
    finally:
        sock.close()


def test_a_queued_job_carries_the_tenant_the_node_saw_never_the_clients(
    upstream: WireServer, redis_server: Any
) -> None:
    """`lmstream serve --queue`: the worker's cache keys by the tenant in the job, so a client
    must not be able to name one (it would read another tenant's answers)."""
    import redis

    from lmstream.cache import JOB_KEY
    from lmstream.redis import RedisChatRegistry, connect

    registry = RedisChatRegistry(connect(redis_server.url), queue=True, close_redis=True)
    proc = wire_processor(upstream)
    proc.cache = ResponseCache()
    with ServedApp(proc, registry=registry, api_key=list(KEYS)) as app:
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Who shares?"}]}
        forged = {"tenant": "someone-else", "bypass": False}
        body = {"id": "queued-1", "messages": [message], JOB_KEY: forged}
        with httpx.stream(
            "POST", f"{app.url}/api/chat", json=body, headers=_auth(KEYS[0], **{"cache-control": "no-cache"}), timeout=5
        ) as resp:
            assert resp.status_code == 200
        client = redis.Redis.from_url(redis_server.url)
        try:
            jobs = client.xrange("lmstream:q:jobs")
        finally:
            client.close()
    assert len(jobs) == 1
    job = json.loads(jobs[0][1][b"job"])
    import hashlib

    assert job["chat"][JOB_KEY] == {"tenant": hashlib.sha256(KEYS[0].encode()).hexdigest(), "bypass": True}
