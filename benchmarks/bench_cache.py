"""The response cache: time to first token of a hit beside a miss (in process and through
`lmstream serve`), 100 identical concurrent requests, and memory per cached token; beside
LiteLLM's in-memory cache on the same upstream.

    python benchmarks/bench_cache.py                      # ~1 minute on 2 cores
    python benchmarks/bench_cache.py --hits 1000 --tokens 100

Method:
  * Upstream: benchmarks/sse_server.py in its own process, paced like a model: the first token
    after --first seconds, then one token every --delay seconds (--tokens of them). Its `/stats`
    counts the chat requests it got: the upstream calls below are counted there.
  * In process: `LMRequestProcessor(..., cache=ResponseCache())` on `openai-compatible/`; TTFT =
    from entering `lmrp.stream(...)` to its first event. A miss is the same request with
    `cache=False`. LiteLLM: `litellm.cache = Cache()` (in-memory), `acompletion(stream=True,
    caching=True)`; TTFT = from the call to the first chunk with content.
  * Through the server: `lmstream serve --cache memory` in its own process; an http.client
    client (one kept-alive connection) sends one request at a time and times the first text chunk (`/api/chat`: a `text-delta`;
    `/v1/chat/completions`: a chunk with content). A miss sends `Cache-Control: no-cache`.
  * 100 identical concurrent requests: the upstream's request count, and the wall time of all
    100 against one request alone (the lmstream cache joins them to one generation).
  * Memory per cached token: the memory store's bytes (entries as held, counted as in
    tests/test_cache.py, which checks the count against tracemalloc) over the output tokens of
    200 distinct cached answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _ms(xs: list[float]) -> tuple[str, str]:
    return f"{_pct(xs, 50) * 1000:.2f}", f"{_pct(xs, 99) * 1000:.2f}"


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


class Upstream:
    def __init__(self, args: argparse.Namespace) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "sse_server.py"), "--port", "0", "--tokens", str(args.tokens)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline().split()[1])
        self.root = f"http://127.0.0.1:{port}"
        self.base = f"{self.root}/first={args.first}/delay={args.delay}/v1"

    def requests(self) -> int:
        return int(httpx.get(f"{self.root}/stats", timeout=5).json()["requests"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# =========================================================================== in process
async def in_process(up: Upstream, args: argparse.Namespace) -> dict[str, Any]:
    from lmstream import LMRequestProcessor, PromptBuilder, ResponseCache, build_lm_invoker

    inv = build_lm_invoker("openai-compatible/bench", credentials="sk-bench", config={"base_url": up.base})
    cache = ResponseCache()
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, cache=cache)
    t0 = {"temperature": 0}

    async def ttft(**kw: Any) -> float:
        start = time.perf_counter()
        async with lmrp.stream(q="What is cached?", hyperparameters=t0, **kw) as s:
            first = None
            async for _ in s:
                if first is None:
                    first = time.perf_counter() - start
        assert first is not None
        return first

    misses = [await ttft(cache=False) for _ in range(args.misses)]
    await ttft()  # stores the answer
    hits = [await ttft() for _ in range(args.hits)]

    # 100 identical concurrent requests (a question nobody asked yet)
    before = up.requests()
    start = time.perf_counter()
    await lmrp.process(q="alone", hyperparameters=t0, cache=False)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    outs = await asyncio.gather(*[lmrp.process(q="together", hyperparameters=t0) for _ in range(args.concurrent)])
    together = time.perf_counter() - start
    calls = up.requests() - before - 1
    assert len({o.text for o in outs}) == 1
    joined = sum(1 for o in outs if o.cache and o.cache["joined"])

    # memory per cached token: distinct answers, generated concurrently
    mem = ResponseCache(max_bytes=1 << 30)
    lm2 = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, cache=mem)
    outs2 = await asyncio.gather(*[lm2.process(q=f"question {i}", hyperparameters=t0) for i in range(args.distinct)])
    tokens = sum(o.usage.output_tokens or 0 for o in outs2)
    text_bytes = sum(len(o.text.encode()) for o in outs2)
    held = (await mem.stats())["bytes"]
    await inv.aclose()
    return {
        "miss": misses,
        "hit": hits,
        "alone": alone,
        "together": together,
        "calls": calls,
        "joined": joined,
        "bytes_per_token": held / tokens,
        "text_bytes_per_token": text_bytes / tokens,
    }


async def litellm_peer(up: Upstream, args: argparse.Namespace) -> dict[str, Any] | str:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    try:
        import litellm
        from litellm import Cache
    except ImportError as exc:
        return f"skipped: {exc}"
    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.cache = Cache()  # in-memory

    async def ttft(q: str, caching: bool = True) -> float:
        start = time.perf_counter()
        resp = await litellm.acompletion(
            model="openai/bench",
            api_base=up.base,
            api_key="sk-bench",
            messages=[{"role": "user", "content": q}],
            temperature=0,
            stream=True,
            caching=caching,
        )
        first = None
        async for chunk in resp:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
        assert first is not None
        return first

    try:
        await ttft("warm-up", caching=False)  # imports and tables load on first use: not timed
        await ttft("warm-up")
        await ttft("warm-up")
        misses = [await ttft("What is cached?", caching=False) for _ in range(args.misses)]
        await ttft("What is cached?")
        before = up.requests()
        hits = [await ttft("What is cached?") for _ in range(args.hits)]
        hit_calls = up.requests() - before
        before = up.requests()
        start = time.perf_counter()
        await ttft("alone")
        alone = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*[ttft("together") for _ in range(args.concurrent)])
        together = time.perf_counter() - start
        calls = up.requests() - before - 1
    except Exception as exc:  # a peer that fails is reported, not fatal
        return f"failed: {type(exc).__name__}: {exc}"[:200]
    return {"miss": misses, "hit": hits, "hit_calls": hit_calls, "alone": alone, "together": together, "calls": calls}


# =========================================================================== through the server
def through_server(up: Upstream, args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    cmd = [sys.executable, "-m", "lmstream.cli", "serve", "--model", "openai-compatible/bench", "--base-url", up.base]
    cmd += ["--port", str(port), "--cache", "memory", "--served-model-name", "bench"]
    env = {**os.environ, "OPENAI_COMPATIBLE_API_KEY": "sk-bench", "PYTHONPATH": os.path.join(ROOT, "src")}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        # http.client sends a small request in one write (as browsers do), over one kept-alive
        # connection; httpx adds ~10 ms of its own per request here, which is not the server's
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        chat = {
            "id": "bench",
            "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "What is cached?"}]}],
            "hyperparameters": {"temperature": 0},
        }
        completion = {
            "model": "bench",
            "messages": [{"role": "user", "content": "What is cached?"}],
            "temperature": 0,
            "stream": True,
        }

        def first_chunk(path: str, body: dict[str, Any], fresh: bool) -> float:
            headers = {"content-type": "application/json", **({"cache-control": "no-cache"} if fresh else {})}
            data = json.dumps(body).encode()
            start = time.perf_counter()
            conn.request("POST", path, body=data, headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            first = None
            while line := resp.readline():
                if first is None and line.startswith(b"data:") and _has_text(line[5:].decode()):
                    first = time.perf_counter() - start
            assert first is not None, path
            return first

        out: dict[str, Any] = {}
        for path, body in (("/api/chat", chat), ("/v1/chat/completions", completion)):
            misses = [first_chunk(path, body, True) for _ in range(args.misses)]
            first_chunk(path, body, False)
            hits = [first_chunk(path, body, False) for _ in range(args.server_hits)]
            out[path] = {"miss": misses, "hit": hits}
        conn.close()
        out["health"] = httpx.get(f"{url}/healthz", timeout=5).json().get("cache")
    finally:
        proc.terminate()
        proc.wait(15)
    return out


def _has_text(payload: str) -> bool:
    """A UI `text-delta`, or a Chat Completions chunk whose delta carries content."""
    try:
        d = json.loads(payload)
    except ValueError:
        return False
    if d.get("type") == "text-delta":
        return bool(d.get("delta"))
    return any((c.get("delta") or {}).get("content") for c in d.get("choices") or [])


# =========================================================================== report
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50, help="tokens per answer (default 50)")
    ap.add_argument("--first", type=float, default=0.3, help="upstream seconds to the first token (default 0.3)")
    ap.add_argument("--delay", type=float, default=0.02, help="upstream seconds between tokens (default 0.02)")
    ap.add_argument("--misses", type=int, default=5, help="misses timed per row (default 5)")
    ap.add_argument("--hits", type=int, default=500, help="in-process hits timed (default 500)")
    ap.add_argument("--server-hits", type=int, default=200, help="hits timed per server route (default 200)")
    ap.add_argument("--concurrent", type=int, default=100, help="identical concurrent requests (default 100)")
    ap.add_argument("--distinct", type=int, default=200, help="distinct answers for memory per token (default 200)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the raw figures here")
    args = ap.parse_args()

    up = Upstream(args)
    try:
        ours = asyncio.run(in_process(up, args))
        peer = asyncio.run(litellm_peer(up, args))
        served = through_server(up, args)
    finally:
        up.close()

    lm_v, ll_v = _version("lmstream"), _version("litellm")
    print(
        f"\nupstream: first token {args.first * 1000:.0f} ms, then {args.tokens} tokens every {args.delay * 1000:.0f} ms"
    )
    print(f"lmstream {lm_v} (ResponseCache, memory) vs LiteLLM {ll_v} (litellm.Cache(), in-memory)")
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (p99 is the machine's as much as ours)\n"
    )
    print("| time to first token | miss p50 ms | hit p50 ms | hit p99 ms | target | vs LiteLLM hit p50 |")
    print("|---|---:|---:|---:|---|---:|")
    m50, _ = _ms(ours["miss"])
    h50, h99 = _ms(ours["hit"])
    ratio = "n/a"
    if isinstance(peer, dict):
        ratio = f"{_pct(peer['hit'], 50) / _pct(ours['hit'], 50):.1f}x faster"
    ok = "met" if _pct(ours["hit"], 99) < 0.005 else "MISSED"
    print(f"| lmstream, in process | {m50} | {h50} | {h99} | p99 < 5 ms: {ok} | {ratio} |")
    if isinstance(peer, dict):
        pm50, _ = _ms(peer["miss"])
        ph50, ph99 = _ms(peer["hit"])
        print(f"| LiteLLM, in process | {pm50} | {ph50} | {ph99} | | 1.0x |")
    for route in ("/api/chat", "/v1/chat/completions"):
        r = served[route]
        sm50, _ = _ms(r["miss"])
        sh50, sh99 = _ms(r["hit"])
        ok = "met" if _pct(r["hit"], 99) < 0.010 else "MISSED"
        print(f"| lmstream serve {route} | {sm50} | {sh50} | {sh99} | p99 < 10 ms: {ok} | |")
    if not isinstance(peer, dict):
        print(f"\nLiteLLM: {peer}")

    print(f"\n| {args.concurrent} identical concurrent requests | upstream calls | wall time | one alone | ratio |")
    print("|---|---:|---:|---:|---:|")
    ok = "" if ours["calls"] == 1 else " (target: 1)"
    print(
        f"| lmstream (joined: {ours['joined']}) | {ours['calls']}{ok} | {ours['together']:.2f} s | {ours['alone']:.2f} s "
        f"| {ours['together'] / ours['alone']:.2f}x |"
    )
    if isinstance(peer, dict):
        print(
            f"| LiteLLM | {peer['calls']} | {peer['together']:.2f} s | {peer['alone']:.2f} s "
            f"| {peer['together'] / peer['alone']:.2f}x |"
        )
        print(f"\n(LiteLLM upstream calls during its {args.hits} hits: {peer['hit_calls']})")
    print(
        f"\nmemory per cached token (memory store, {args.distinct} answers): {ours['bytes_per_token']:.1f} bytes "
        f"(the answer text alone: {ours['text_bytes_per_token']:.1f} bytes/token)"
    )
    print(f"server /healthz cache: {json.dumps(served['health'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lmstream": ours, "litellm": peer, "server": served}, f)


if __name__ == "__main__":
    main()
