"""The attacks of issue 31 run again against a real `lmstream serve` on loopback, with figures:
slots free, memory bounded, health truthful. Bounded in count and time.

    python benchmarks/bench_attacks.py                      # every attack
    python benchmarks/bench_attacks.py --attacks idle,slow  # some of them
    python benchmarks/bench_attacks.py --src /path/to/older/checkout/src   # the same attacks on other code

Attacks (each against a fresh server process, upstream: the wire replay server):
  * idle: 130 sockets that send nothing (reconnected when closed) against --max-concurrent 32
    (the connection cap is 2 x 32 + 64 = 128), then 40 probes alternating /healthz and
    /api/chat: how many got 503.
  * slow: 32 sockets with a 4 kB receive buffer ask for long answers and never read, against
    --max-concurrent 32 --write-timeout 5: slots held over time (from /healthz), server RSS.
  * approvals: 1,200 chats whose answer asks for approval of an MCP tool, each carrying a 200 kB
    conversation, never answered: server RSS before and after (the store keeps at most 64 MiB).
  * queue: `--redis --queue` without workers; 400 chats of 1 MB (just under the body limit) posted and left: Redis memory,
    how many got 429, and what /healthz says.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.wire import fixtures as fx  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

MCP_SERVER = f"stdio:{sys.executable} {ROOT / 'tests' / 'mcp_server.py'} stdio"
#: the lmstream the servers run (--src)
SRC = ROOT / "src"


def has_flag(flag: str) -> bool:
    return flag in (SRC / "lmstream" / "server" / "cli.py").read_text()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Serve:
    def __init__(self, upstream: WireServer, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(SRC), "OPENAI_COMPATIBLE_API_KEY": "k"}
        cmd = [sys.executable, "-m", "lmstream", "serve", "--port", str(self.port), "--model",
               "openai-compatible/m", "--base-url", f"{upstream.base_url}/v1", *extra]  # fmt: skip
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            assert self.p.poll() is None, "lmstream serve exited"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code in (200, 503):
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def health(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.url}/healthz", timeout=10)
        return r.status_code, r.json()

    def stop(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def chat(i: int, text: str = "hi") -> dict[str, Any]:
    return {"id": f"c{i}", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": text}]}]}


def attack_idle() -> list[tuple[str, str]]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text([" ok"])))
        s = Serve(srv, "--max-concurrent", "32")
        idle: list[socket.socket] = []
        try:
            idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(130)]
            time.sleep(0.5)
            codes = []
            with httpx.Client(timeout=10) as c:
                for i in range(40):
                    if i % 2:
                        r = c.get(f"{s.url}/healthz")
                    else:
                        r = c.post(f"{s.url}/api/chat", json=chat(i))
                    codes.append(r.status_code)
                    for j, sock in enumerate(idle):  # a closed one is reopened at once
                        try:
                            sock.setblocking(False)
                            if sock.recv(1) == b"":
                                raise OSError
                        except BlockingIOError:
                            continue
                        except OSError:
                            sock.close()
                            idle[j] = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            bad = sum(1 for c in codes if c == 503)
            return [("idle: probes answered 503 (130 idle sockets, --max-concurrent 32)", f"{bad} of {len(codes)}")]
        finally:
            for sock in idle:
                sock.close()
            s.stop()


def attack_slow() -> list[tuple[str, str]]:
    big = ["x" * 2000] * 3000  # ~6 MB per answer
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(big)))
        timeout = ["--write-timeout", "5"] if has_flag("--write-timeout") else []  # older code has none
        s = Serve(srv, "--max-concurrent", "32", *timeout)
        socks = []
        try:
            before = rss_mb(s.p.pid)
            body = json.dumps(chat(0)).encode()
            for i in range(32):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", s.port))
                b = json.dumps(chat(i)).encode() if i else body
                sock.sendall(
                    f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(b)}\r\n\r\n".encode() + b
                )
                socks.append(sock)
            held, peak = [], before
            t0 = time.monotonic()
            while time.monotonic() - t0 < 45 and (not held or held[-1][1] or len(held) < 5):
                held.append((round(time.monotonic() - t0), s.health()[1]["streams"]))
                peak = max(peak, rss_mb(s.p.pid))
                time.sleep(1)
            after = rss_mb(s.p.pid)
            ok = httpx.post(f"{s.url}/v1/stream", json={"prompt": "hi"}, timeout=30).status_code
            by_second = ", ".join(f"{t}s:{n}" for t, n in held[::3])
            return [
                ("slow: slots held (of 32) over time, --write-timeout 5", by_second),
                ("slow: server RSS before / peak / after (MB)", f"{before:.0f} / {peak:.0f} / {after:.0f}"),
                ("slow: a new request afterwards", str(ok)),
            ]
        finally:
            for sock in socks:
                sock.close()
            s.stop()


def attack_approvals(n: int = 1200) -> list[tuple[str, str]]:
    with WireServer(repeat_last=True) as srv:
        call = (fx.ToolCall("add", '{"a": 2, "b": 40}', id="call_add"),)
        srv.enqueue(Script(chunks=fx.openai_chat_tool_calls(call)))
        s = Serve(srv, "--mcp", MCP_SERVER, "--approve-tools", "add")
        try:
            before = rss_mb(s.p.pid)
            history = "y" * 200_000
            asked = 0
            t0 = time.monotonic()
            with httpx.Client(timeout=30) as c:
                for i in range(n):
                    r = c.post(f"{s.url}/api/chat", json=chat(i, history))
                    asked += r.status_code == 200 and b"tool-approval-request" in r.content
            elapsed = time.monotonic() - t0
            after = rss_mb(s.p.pid)
            code = httpx.post(f"{s.url}/api/chat", json=chat(n + 1), timeout=30).status_code
            return [
                (f"approvals: {n} unanswered, 200 kB each ({elapsed:.0f} s)", f"{asked} asked"),
                ("approvals: server RSS before / after (MB)", f"{before:.0f} / {after:.0f}"),
                ("approvals: a new chat afterwards", str(code)),
            ]
        finally:
            s.stop()


def attack_queue(n: int = 400) -> list[tuple[str, str]]:
    import redis

    with RedisServer() as rs, WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text([" ok"])))
        r = redis.Redis.from_url(rs.url)
        s = Serve(srv, "--redis", rs.url, "--queue")
        try:
            before = r.info("memory")["used_memory"] / 2**20
            text = "z" * 1_000_000  # a body just under the 1 MiB limit
            codes: dict[int, int] = {}
            t0 = time.monotonic()
            with httpx.Client(timeout=30) as c:
                for i in range(n):
                    with c.stream("POST", f"{s.url}/api/chat", json=chat(i, text)) as resp:
                        codes[resp.status_code] = codes.get(resp.status_code, 0) + 1  # and leave
            elapsed = time.monotonic() - t0
            after = r.info("memory")["used_memory"] / 2**20
            status, health = s.health()
            said = f"{status} {health.get('status')} down={health.get('down')} queued={health.get('queued')}"
            return [
                (f"queue: {n} posts of 1 MB, left at once, no worker ({elapsed:.0f} s)", str(codes)),
                ("queue: Redis used_memory before / after (MB)", f"{before:.0f} / {after:.0f}"),
                ("queue: /healthz", said),
            ]
        finally:
            s.stop()
            r.close()


ATTACKS = {"idle": attack_idle, "slow": attack_slow, "approvals": attack_approvals, "queue": attack_queue}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--src", default=None, help="the src/ directory of the lmstream to attack (default: this one)")
    args = ap.parse_args()
    if args.src:
        global SRC
        SRC = Path(args.src).resolve()
    print(f"lmstream under attack: {SRC}")
    rows: list[tuple[str, str]] = []
    for name in args.attacks.split(","):
        rows += ATTACKS[name]()
    width = max(len(k) for k, _ in rows)
    print(f"{'attack':<{width}}  result")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
