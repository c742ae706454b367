"""Slow clients against `lmstream serve` (a real subprocess, real uvicorn, real sockets on loopback):
headers or a body trickled a byte at a time, and connections that send nothing, are cut after
`--read-timeout`; `--max-concurrent` bounds the answers. Every loop here is bounded in time."""

from __future__ import annotations

import socket
import time

import httpx

from tests.test_server_app import chat_body
from tests.test_server_cli import serving
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

READ_TIMEOUT = 1.0


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setblocking(False)
    return s


def _trickle(socks: list[socket.socket], pieces: list[bytes], limit: float) -> dict[int, tuple[float, bytes]]:
    """Send `pieces` (one per round, 0.25 s apart) on every socket until the server closes it;
    returns, per socket index, when it was closed and what the server had said."""
    t0 = time.monotonic()
    closed: dict[int, tuple[float, bytes]] = {}
    got: dict[int, bytes] = {i: b"" for i in range(len(socks))}
    step = 0
    while len(closed) < len(socks) and time.monotonic() - t0 < limit:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                while True:
                    data = s.recv(4096)
                    if not data:
                        closed[i] = (time.monotonic() - t0, got[i])
                        break
                    got[i] += data
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = (time.monotonic() - t0, got[i])
            if i not in closed and step < len(pieces):
                try:
                    s.send(pieces[step])
                except OSError:
                    closed[i] = (time.monotonic() - t0, got[i])
        step += 1
        time.sleep(0.25)
    for s in socks:
        s.close()
    return closed


def test_slow_headers_slow_bodies_and_silent_connections_are_cut_and_answers_are_bounded():
    with WireServer(repeat_last=True) as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(tuple(f" w{i}" for i in range(30))), delay_between=0.1))
        args = ("--model", "openai-compatible/m", "--base-url", f"{wire.base_url}/v1")
        with serving(*args, "--read-timeout", str(READ_TIMEOUT), "--max-concurrent", "1") as url:
            # 1. headers, one line every 0.25 s, forever
            head = [b"POST /api/chat HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n"] + [b"X-Slow: 1\r\n"] * 200
            slow_heads = _trickle([_connect(url) for _ in range(30)], head, limit=10)
            # 2. headers at once, then the body a byte at a time
            start = b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            body = [start + b"content-length: 5000\r\n\r\n{"] + [b" "] * 200
            slow_bodies = _trickle([_connect(url) for _ in range(10)], body, limit=10)
            # 3. nothing at all
            silent = _trickle([_connect(url) for _ in range(10)], [], limit=10)
            # 4. --max-concurrent 1: a second answer while one streams is refused
            with httpx.Client(timeout=20) as c:
                with c.stream("POST", f"{url}/api/chat", json=chat_body(chat_id="one")) as r:
                    lines = r.iter_lines()
                    next(lines)
                    busy = c.post(f"{url}/api/chat", json=chat_body(chat_id="two"))
                    rest = list(lines)
                health = c.get(f"{url}/healthz").json()
    for name, closed, n in (("slow headers", slow_heads, 30), ("slow bodies", slow_bodies, 10), ("silent", silent, 10)):
        assert len(closed) == n, f"{name}: {n - len(closed)} connections still open after 10 s"
        assert max(t for t, _ in closed.values()) < READ_TIMEOUT + 2.5, f"{name}: too slow to cut"
    assert all(said.startswith(b"HTTP/1.1 408") for _, said in slow_heads.values())
    assert all(b" 408 " in said and b"body: not received within" in said for _, said in slow_bodies.values())
    assert busy.status_code == 429 and "data: [DONE]" in rest
    assert health["streams"] == 0 and health["max_concurrent"] == 1
    assert len(wire.requests) == 1
