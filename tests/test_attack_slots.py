"""Slots held by silent clients (issue 31, items 1 and 2): idle sockets never lock out requests
or health checks, and a client that never reads is cut off after `--write-timeout`, its slot
freed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.redis_server import free_port
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures
from tests.wire.server import Script, WireServer


def _serve(upstream: WireServer, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or "src", "OPENAI_COMPATIBLE_API_KEY": "k"}
    cmd = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), "--model", "openai-compatible/m",
           "--base-url", f"{upstream.base_url}/v1", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


def test_idle_sockets_never_lock_out_requests_or_health_checks() -> None:
    """150 sockets that send nothing against --max-concurrent 2 (uvicorn's cap was 2 x 2 + 64 = 68)."""
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text([" ok"])))
        proc, url = _serve(srv, "--max-concurrent", "2")
        port = int(url.rsplit(":", 1)[1])
        idle: list[socket.socket] = []
        try:
            for _ in range(150):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.3)
            statuses = []
            with httpx.Client(timeout=10) as c:
                for i in range(20):
                    r = c.get(f"{url}/healthz") if i % 2 else c.post(f"{url}/v1/stream", json={"prompt": "hi"})
                    statuses.append(r.status_code)
                    # the attacker reconnects what was closed, keeping 150 idle sockets
                    for j, s in enumerate(idle):
                        if s.fileno() < 0:
                            idle[j] = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert statuses == [200] * 20, statuses
        finally:
            for s in idle:
                s.close()
            _stop(proc)


def _never_reading_post(url: str, path: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # as small as the kernel allows
    s.connect((host, int(port)))
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    s.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return s  # never read


def test_a_client_that_never_reads_is_cut_off_and_its_slot_freed() -> None:
    big = ["x" * 2000] * 4000  # ~8 MB of answer: far more than the socket buffers hold
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(big)))
        with ServedApp(wire_processor(srv), max_concurrent=2, write_timeout=1.0) as app:
            socks = [
                _never_reading_post(app.url, "/v1/stream", b'{"prompt": "hi"}'),
                _never_reading_post(app.url, "/api/chat", b'{"id": "c", "messages": [{"id": "u", "role": "user", '
                                    b'"parts": [{"type": "text", "text": "hi"}]}]}'),
            ]  # fmt: skip
            try:
                assert app.wait(lambda: app.state.guard.active == 2, 10), "the two answers did not start"
                t0 = time.monotonic()
                assert app.wait(lambda: app.state.guard.active == 0 and not app.state.running, 20), (
                    f"slots still held: {app.state.guard.active}"
                )
                assert time.monotonic() - t0 < 15
                with httpx.Client(timeout=10) as c:  # the slots serve others again
                    assert c.post(f"{app.url}/v1/stream", json={"prompt": "hi"}).status_code == 200
            finally:
                for s in socks:
                    s.close()


def test_a_detached_answer_goes_on_for_readers_who_read(redis_server) -> None:  # type: ignore[no-untyped-def]
    """With --redis the answer runs detached: the never-reading client is cut off, the answer
    goes on, and a reader who does read gets all of it."""
    from lmstream.redis import RedisChatRegistry, connect

    words = [f" w{i}" + "x" * 10_000 for i in range(600)]  # ~6 MB
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(words)))
        registry = RedisChatRegistry(connect(redis_server.url), close_redis=True)
        with ServedApp(wire_processor(srv), registry=registry, write_timeout=1.0) as app:
            user = b'{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}'
            body = b'{"id": "det", "messages": [' + user + b"]}"
            s = _never_reading_post(app.url, "/api/chat", body)
            try:
                assert app.wait(lambda: app.state.guard.active >= 1, 10)
                text = []
                with httpx.Client(timeout=60) as c, c.stream("GET", f"{app.url}/api/chat/det/stream") as r:
                    assert r.status_code == 200
                    for line in r.iter_lines():
                        if line.startswith('data: {"type":"text-delta"'):
                            text.append(line)
                assert (len(text) >= 1 and "w599" in text[-1]) or any("w599" in t for t in text[-5:])
                assert app.wait(lambda: app.state.guard.active == 0, 20), app.state.guard.active
            finally:
                s.close()
