"""Server-side CPU per relayed token: lmstream's `/api/chat`, `/v1/stream` and OpenAI-compatible
`/v1/chat/completions` vs a bare Starlette relay (the floor) and LiteLLM's proxy.

    python benchmarks/bench_server.py                        # 20 requests x 2,000 tokens, 4 at a time
    python benchmarks/bench_server.py --tokens 5000 --requests 10 --concurrency 1 --servers floor,lmstream-chat
    python benchmarks/bench_server.py --servers floor,lmstream-openai --litellm "$(command -v litellm)"

Method:
  * Upstream: benchmarks/sse_server.py in its own process (OpenAI Chat Completions SSE, one
    token per chunk). Each server under test is a FRESH uvicorn process (`--role`), pinned to
    one CPU when there are 2+ (the upstream and this client share the others).
  * Servers: `floor` = Starlette `StreamingResponse` relaying the upstream's bytes untouched
    (httpx `aiter_raw`), no parsing, the cheapest correct relay; `lmstream-chat` = `create_app`
    `/api/chat` (parse upstream SSE -> events -> UI message chunks -> SSE); `lmstream-v1` =
    `/v1/stream` (events as lmstream SSE); `lmstream-openai` = `/v1/chat/completions` (events ->
    Chat Completions chunks, as any OpenAI client reads them); `litellm-proxy` = LiteLLM's proxy
    on the same upstream (the gateway people run today for the same job).
  * Client: this process, httpx, reads every byte; each response is checked to carry exactly
    the N tokens " w0".." w{N-1}" in order.
  * Each row is the median of --repeats fresh server processes, the servers alternating.
  * CPU: the server process's user+sys CPU (from /proc) across the measured requests (after one
    warm-up request), divided by the tokens relayed. Ratio = that / the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOKEN = re.compile(rb" w(\d+)")
_ids = itertools.count()


# =========================================================================== server roles
def role_floor(upstream: str, port: int) -> None:
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    # Sharded like lmstream's own HTTP client: httpx's pool does work proportional to its
    # connection count per request, so one client carrying 1,000 streams goes quadratic.
    shards = [httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=10_000)) for _ in range(32)]
    turn = itertools.count()

    async def relay(request: Request) -> StreamingResponse:
        body = await request.body()
        client = shards[next(turn) % len(shards)]
        req = client.build_request("POST", f"{upstream}/v1/chat/completions", content=body)
        resp = await client.send(req, stream=True)

        async def gen():
            try:
                async for raw in resp.aiter_raw():
                    yield raw
            finally:
                await resp.aclose()

        return StreamingResponse(gen(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/relay", relay, methods=["POST"])])
    if os.environ.get("BENCH_GC_FREEZE"):
        import gc

        gc.collect()
        gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def role_lmstream(upstream: str, port: int) -> None:
    import uvicorn

    sys.path.insert(0, os.path.join(ROOT, "src"))
    from lmstream import build_lm_request_processor
    from lmstream.server import create_app

    proc = build_lm_request_processor(
        "openai-compatible/bench", credentials="sk-bench", config={"base_url": f"{upstream}/v1"}
    )
    app = create_app(proc, max_concurrent=10_000)
    if os.environ.get("BENCH_GC_FREEZE"):
        import gc

        gc.collect()
        gc.freeze()  # start-up objects out of the collector's sight, as a long-lived server does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# =========================================================================== measurement
SERVERS = {
    "floor": ("floor", "/relay", lambda n: {"model": "bench", "stream": True, "max_tokens": n, "messages": []}),
    "lmstream-chat": (
        "lmstream",
        "/api/chat",
        lambda n: {
            "id": f"bench{next(_ids)}",  # one answer runs per chat id: a new one stops the earlier
            "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
            "hyperparameters": {"max_tokens": n},
        },
    ),
    "lmstream-v1": ("lmstream", "/v1/stream", lambda n: {"prompt": "go", "hyperparameters": {"max_tokens": n}}),
    "lmstream-openai": (
        "lmstream",
        "/v1/chat/completions",
        lambda n: {
            "model": "openai-compatible/bench",
            "stream": True,
            "max_tokens": n,
            "messages": [{"role": "user", "content": "go"}],
        },
    ),
    "litellm-proxy": (
        "litellm",
        "/v1/chat/completions",
        lambda n: {
            "model": "openai/bench",
            "stream": True,
            "max_tokens": n,
            "messages": [{"role": "user", "content": "go"}],
        },
    ),
}


def server_cmd(role: str, upstream: str, port: int, litellm: str | None) -> tuple[list[str], dict[str, str]]:
    """The command line of one server under test (LiteLLM's proxy runs from its own interpreter)."""
    if role != "litellm":
        return [sys.executable, __file__, "--role", role, "--upstream", upstream, "--port", str(port)], dict(os.environ)
    if not litellm:
        raise RuntimeError("litellm-proxy needs --litellm PATH (the `litellm` command of an env with litellm[proxy])")
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",  # loopback only, benchmark only
        "LITELLM_LOG": "ERROR",
    }
    cmd = [litellm, "--model", "openai/bench", "--api_base", f"{upstream}/v1", "--host", "127.0.0.1"]
    return [*cmd, "--port", str(port), "--num_workers", "1"], env


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                out.extend(kids)
                todo.extend(kids)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its descendants (LiteLLM's CLI runs uvicorn in a child)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one(client, url: str, body: dict, n: int) -> None:
    parts: list[bytes] = []
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            raise AssertionError(f"{url}: HTTP {r.status_code}")
        async for chunk in r.aiter_bytes():
            parts.append(chunk)
    got = [int(m.group(1)) for m in TOKEN.finditer(b"".join(parts))]
    if got != list(range(n)):
        raise AssertionError(f"{url}: {len(got)} tokens delivered (in order: {got == sorted(got)}), {n} expected")


async def drive(url: str, body_of, n: int, requests: int, concurrency: int, pid: int) -> tuple[float, float]:
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        await one(client, url, body_of(n), n)  # warm-up
        sem = asyncio.Semaphore(concurrency)

        async def task() -> None:
            async with sem:
                await one(client, url, body_of(n), n)

        cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(task() for _ in range(requests)))
        return tree_cpu_seconds(pid) - cpu0, time.perf_counter() - t0


def measure(name: str, upstream: str, args: argparse.Namespace, cpus: set[int] | None) -> dict:
    role, path, body_of = SERVERS[name]
    port = free_port()
    cmd, env = server_cmd(role, upstream, port, args.litellm)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if role == "litellm" else None
    )
    try:
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{name} server did not start") from None
                time.sleep(0.1)
        cpu, wall = asyncio.run(
            drive(f"http://127.0.0.1:{port}{path}", body_of, args.tokens, args.requests, args.concurrency, proc.pid)
        )
    finally:
        kids = descendants(proc.pid)
        proc.terminate()
        proc.wait(10)
        for k in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGTERM)
    tokens = args.tokens * args.requests
    return {"server": name, "tokens": tokens, "wall_s": wall, "cpu_s": cpu, "us_per_token": cpu / tokens * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2000, help="tokens per request")
    ap.add_argument("--requests", type=int, default=20, help="measured requests per server")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="fresh server processes per row; the median is shown")
    ap.add_argument("--servers", default="floor,lmstream-chat,lmstream-v1,lmstream-openai")
    ap.add_argument("--litellm", default=None, help="path of a `litellm` command (litellm[proxy]) to add its proxy")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.litellm and "litellm" not in args.servers:
        args.servers += ",litellm-proxy"
    if args.role:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
        {"floor": role_floor, "lmstream": role_lmstream}[args.role](args.upstream, args.port)
        return
    ncpu = os.cpu_count() or 1
    pin = not args.no_pin and ncpu >= 2
    server_cpus = {ncpu - 1} if pin else None
    others = set(range(ncpu - 1)) if pin else None
    if others:
        os.sched_setaffinity(0, others)
    up = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "sse_server.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        if others:
            os.sched_setaffinity(up.pid, others)
        line = up.stdout.readline().split()
        upstream = f"http://127.0.0.1:{line[-1]}"
        runs: dict[str, list[dict]] = {name: [] for name in args.servers.split(",")}
        for _ in range(args.repeats):  # alternate the servers, so drift in machine load hits all alike
            for name in runs:
                runs[name].append(measure(name, upstream, args, server_cpus))
        rows = [sorted(rs, key=lambda r: r["us_per_token"])[len(rs) // 2] for rs in runs.values()]
    finally:
        up.terminate()
        up.wait(10)
    floor = next((r["us_per_token"] for r in rows if r["server"] == "floor"), None)
    print(
        f"\n{args.requests} requests x {args.tokens} tokens, {args.concurrency} at a time, median of {args.repeats} "
        f"fresh server processes; server pinned: {pin}\n"
    )
    print("| server | tokens | wall s | server CPU s | CPU µs/token | vs floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['us_per_token'] / floor:.2f}x" if floor else "-"
        print(
            f"| {r['server']} | {r['tokens']:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['us_per_token']:.1f} | {ratio} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
