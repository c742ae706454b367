"""Many concurrent browser streams through one server process: delivery and added latency.

    python benchmarks/bench_server_streams.py                      # 1,000 streams x 30 tokens, 1 token / 100 ms each
    python benchmarks/bench_server_streams.py --streams 200 --servers floor,lmstream-chat

Method: the upstream (benchmarks/sse_server.py, paced, `ts=1`: each token's text is the
upstream's send time) feeds the server under test (a fresh uvicorn process, pinned to the last
CPU, as in bench_server.py); this process opens every stream with raw asyncio sockets (a
browser-like reader: HTTP/1.1 chunked + SSE, no client library) and, for each token, records
receive time - upstream send time. Every stream must deliver every token in order. The floor is
the bare Starlette relay; "added" latency is what the server adds on top of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_server import SERVERS, free_port  # noqa: E402

TS = re.compile(rb" (\d{9,}\.\d+)")


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def one_stream(
    port: int, path: str, body: bytes, n: int, lat: list[tuple[float, float]], started: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise AssertionError(head[:200])
        got = 0
        buf = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            now = time.time()
            buf += data[:-2]
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, buf = buf[: cut + 2], buf[cut + 2 :]
            for m in TS.finditer(complete):
                lat.append((now, now - float(m.group(1))))
                if got == 0:
                    started.append(now)
                got += 1
        return got
    finally:
        writer.close()


async def drive(port: int, path: str, body_of, args: argparse.Namespace) -> dict:
    lat: list[tuple[float, float]] = []
    started: list[float] = []

    async def go(i: int) -> int:
        await asyncio.sleep(i * args.ramp / args.streams)  # browsers arrive over --ramp seconds
        return await one_stream(port, path, json.dumps(body_of(args.tokens)).encode(), args.tokens, lat, started)

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(go(i) for i in range(args.streams)), return_exceptions=True)
    wall = time.perf_counter() - t0
    failed = [c for c in counts if not isinstance(c, int)]
    delivered = sum(c for c in counts if isinstance(c, int))
    # steady state: tokens received once every stream is streaming (the opening wave excluded)
    all_open = max(started) if len(started) == args.streams else float("inf")
    steady = sorted(d for t, d in lat if t > all_open)
    every = sorted(d for _, d in lat)
    q = statistics.quantiles(steady, n=100) if len(steady) > 100 else [float("nan")] * 99
    qa = statistics.quantiles(every, n=100) if len(every) > 100 else [float("nan")] * 99
    return {
        "steady_tokens": len(steady),
        "all_p99_ms": qa[98] * 1e3,
        "delivered": delivered,
        "expected": args.streams * args.tokens,
        "failed": len(failed),
        "first_error": repr(failed[0])[:200] if failed else None,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "max_ms": steady[-1] * 1e3 if steady else float("nan"),
        "wall_s": wall,
    }


def measure(name: str, upstream: str, args: argparse.Namespace, cpus: set[int] | None) -> dict:
    if name == "direct":  # no server in between: what the upstream and this client add by themselves
        _, path, body_of = SERVERS["floor"]
        up_port = int(upstream.rsplit(":", 1)[1].split("/")[0])
        up_path = "/" + upstream.split("/", 3)[3] + "/v1/chat/completions"
        return {"server": name, **asyncio.run(drive(up_port, up_path, body_of, args))}
    role, path, body_of = SERVERS[name]
    port = free_port()
    cmd = [sys.executable, os.path.join(HERE, "bench_server.py"), "--role", role, "--upstream", upstream]
    proc = subprocess.Popen([*cmd, "--port", str(port)])
    try:
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} server did not start") from None
                time.sleep(0.1)
        row = asyncio.run(drive(port, path, body_of, args))
    finally:
        proc.terminate()
        proc.wait(10)
    return {"server": name, **row}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--tokens", type=int, default=30, help="tokens per stream")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between tokens of one stream")
    ap.add_argument("--ramp", type=float, default=1.0, help="seconds over which the streams open")
    ap.add_argument("--servers", default="direct,floor,lmstream-chat", help="direct = the client reads the upstream")
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    raise_nofile()
    ncpu = os.cpu_count() or 1
    pin = not args.no_pin and ncpu >= 2
    server_cpus = {ncpu - 1} if pin else None
    others = set(range(ncpu - 1)) if pin else None
    if others:
        os.sched_setaffinity(0, others)
    up = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sse_server.py"), "--port", "0", "--slots", "100"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = up.stdout.readline().split()[-1]
        upstream = f"http://127.0.0.1:{port}/delay={args.interval}/ts=1"
        rows = [measure(name, upstream, args, server_cpus) for name in args.servers.split(",")]
    finally:
        up.terminate()
        up.wait(10)
    print(f"\n{args.streams} streams x {args.tokens} tokens, one token per {args.interval * 1e3:.0f} ms each\n")
    print("Latency = receive time - upstream send time, over tokens received once every stream was open")
    print("(the opening wave excluded; its p99 is the last column).\n")
    print("| server | delivered | failed streams | tokens measured | p50 ms | p99 ms | max ms | p99 incl. opening ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['server']} | {r['delivered']:,} / {r['expected']:,} | {r['failed']} | {r['steady_tokens']:,} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['all_p99_ms']:.1f} |"
        )
        if r["first_error"]:
            print(f"  first error: {r['first_error']}")


if __name__ == "__main__":
    main()
