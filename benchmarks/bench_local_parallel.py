"""Many concurrent streams on the embedded model: lmstream's engine vs its peers, side by side.

At 1, 2, 4, 8 and 16 concurrent streams of 128 tokens each, prints aggregate tokens/s and
time to first token (p50/p99) for:

1. lmstream's engine (continuous batching, `parallel=N`), through `lmrp.stream()` with events;
2. raw llama-cpp-python `create_chat_completion(stream=True)`, serial (one at a time, as
   lmstream ran before): every request is waiting from the start;
3. llama.cpp's own `llama-server --parallel N` (continuous batching) over HTTP streaming,
   built from the llama.cpp vendored in the same llama-cpp-python sdist (same commit).

Each client runs in a fresh process, one after the other, with the same threads. Sampling:
temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1, a seed per stream.

    python benchmarks/bench_local_parallel.py [--streams 1,2,4,8,16] [--tokens 128] [--threads N]

`llama-server` is looked up as $LLAMA_SERVER, then ~/.cache/lmstream-bench/llama-server; the
column is left out when it is missing. To build it (about 6 minutes on 2 cores):

    pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz && cd llama_cpp_python-0.3.36
    cmake -S vendor/llama.cpp -B build -DGGML_NATIVE=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF
    nice cmake --build build --target llama-server -j 2
    ln -s "$PWD/build/bin/llama-server" ~/.cache/lmstream-bench/llama-server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "Write a long story about a dragon who learns to paint.",
    "Write a long story about a lighthouse keeper and a storm.",
    "Write a long story about a robot that plants a garden.",
    "Write a long story about two friends crossing a desert.",
    "Write a long story about a cat who becomes mayor.",
    "Write a long story about a ship lost in the ice.",
    "Write a long story about a baker in a tiny village.",
    "Write a long story about a child who finds a map.",
]
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.1}
CACHE = Path.home() / ".cache" / "lmstream-bench"

Result = tuple[int, float, float]  # (tokens, ttft from t0, end from t0)


def question(i: int) -> str:
    return f"{QUESTIONS[i % len(QUESTIONS)]} (Story {i + 1}.)"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------- clients
def lmstream_child(n: int, tokens: int, threads: int) -> dict[str, Any]:
    from lmstream import LMRequestProcessor, LocalLMInvoker, PromptBuilder

    invoker = LocalLMInvoker(parallel=n, n_threads=threads, n_threads_batch=threads)
    invoker.load()
    rss_loaded = rss_mb()
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{question}"), invoker)

    async def one(i: int, t0: float, k: int) -> Result:
        first = None
        count = 0
        hyper = {"max_tokens": k, "seed": 1000 + i, **SAMPLING}
        async with lmrp.stream(question=question(i), hyperparameters=hyper) as stream:
            async for event in stream:
                if event.type == "response":
                    count += 1
                    if first is None:
                        first = time.perf_counter() - t0
            out = await stream.result()
        assert first is not None and out.usage.output_tokens >= count
        return out.usage.output_tokens, first, time.perf_counter() - t0

    async def main() -> list[Result]:
        await one(0, time.perf_counter(), 4)  # warm-up: llama.cpp sets its graphs up
        t0 = time.perf_counter()
        return list(await asyncio.gather(*[one(i, t0, tokens) for i in range(n)]))

    results = asyncio.run(main())
    return {"results": results, "rss_loaded": rss_loaded, "rss_after": rss_mb()}


def raw_child(n: int, tokens: int, threads: int) -> dict[str, Any]:
    import llama_cpp

    from lmstream.invokers.local import embedded_model_path

    model = llama_cpp.Llama(
        model_path=str(embedded_model_path("smollm2-135m")),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def one(i: int, t0: float, k: int) -> Result:
        first = None
        count = 0
        msgs = [{"role": "user", "content": question(i)}]
        for chunk in model.create_chat_completion(
            messages=msgs,  # type: ignore[arg-type]
            stream=True,
            max_tokens=k,
            seed=1000 + i,
            **SAMPLING,  # type: ignore[arg-type]
        ):
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index]
                count += 1
                if first is None:
                    first = time.perf_counter() - t0
        assert first is not None
        return count, first, time.perf_counter() - t0

    one(0, time.perf_counter(), 4)
    t0 = time.perf_counter()  # all n requests are waiting from here; they run one at a time
    return {"results": [one(i, t0, tokens) for i in range(n)]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_child(n: int, tokens: int, threads: int, binary: str) -> dict[str, Any]:
    import httpx

    from lmstream.invokers.local import embedded_model_path

    port = _free_port()
    cmd = [binary, "-m", str(embedded_model_path("smollm2-135m")), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--parallel", str(n), "-c", str(2048 * n), "-t", str(threads), "-tb", str(threads), "--no-webui"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(Path(binary).resolve().parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not start")
            time.sleep(0.2)

        async def one(client: httpx.AsyncClient, i: int, t0: float, k: int) -> Result:
            body = {
                "messages": [{"role": "user", "content": question(i)}],
                "stream": True,
                "max_tokens": k,
                "seed": 1000 + i,
                **SAMPLING,
            }
            first = None
            count = 0
            async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    choices = json.loads(line[6:]).get("choices") or []
                    if choices and choices[0].get("delta", {}).get("content"):
                        count += 1
                        if first is None:
                            first = time.perf_counter() - t0
            assert first is not None
            return count, first, time.perf_counter() - t0

        async def main() -> list[Result]:
            async with httpx.AsyncClient(timeout=600) as client:
                await one(client, 0, time.perf_counter(), 4)
                t0 = time.perf_counter()
                return list(await asyncio.gather(*[one(client, i, t0, tokens) for i in range(n)]))

        return {"results": asyncio.run(main())}
    finally:
        proc.terminate()
        proc.wait(10)


# ----------------------------------------------------------------------------- the table
def summary(results: list[Result]) -> tuple[float, float, float]:
    total = sum(r[0] for r in results)
    wall = max(r[2] for r in results)
    ttfts = sorted(r[1] for r in results)
    p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
    return total / wall, statistics.median(ttfts) * 1000, p99 * 1000


def find_server() -> str | None:
    for candidate in (os.environ.get("LLAMA_SERVER"), str(CACHE / "llama-server")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def kv_mb_per_sequence(n_ctx: int) -> float:
    """KV cache bytes one sequence of n_ctx cells holds (f16 K and V, every layer)."""
    import llama_cpp as L

    from lmstream.invokers._llama.native import load_model
    from lmstream.invokers.local import embedded_model_path

    m = load_model(str(embedded_model_path("smollm2-135m"))).ptr
    head = L.llama_model_n_embd(m) // L.llama_model_n_head(m)
    per_token = 2 * L.llama_model_n_layer(m) * L.llama_model_n_head_kv(m) * head * 2
    return float(per_token * n_ctx / 2**20)


def run_child(kind: str, n: int, args: argparse.Namespace, binary: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--tokens", str(args.tokens)]
    cmd += ["--threads", str(args.threads)]
    if binary:
        cmd += ["--server", binary]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} at {n} streams failed: {out.stderr[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="1,2,4,8,16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads for all (default: lmstream's)")
    ap.add_argument("--child", choices=["lmstream", "raw", "server"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--server", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads is None:
        from lmstream.invokers._llama.chat import default_threads

        args.threads = default_threads()
    if args.child:
        if args.child == "lmstream":
            print(json.dumps(lmstream_child(args.n, args.tokens, args.threads)))
        elif args.child == "raw":
            print(json.dumps(raw_child(args.n, args.tokens, args.threads)))
        else:
            print(json.dumps(server_child(args.n, args.tokens, args.threads, args.server)))
        return
    import llama_cpp

    binary = find_server()
    load0 = os.getloadavg()[0]
    counts = [int(s) for s in args.streams.split(",")]
    rows = []
    rss: dict[int, float] = {}
    for n in counts:
        lm = run_child("lmstream", n, args)
        rss[n] = lm["rss_loaded"]
        raw = run_child("raw", n, args)
        srv = run_child("server", n, args, binary) if binary else None
        rows.append((n, summary(lm["results"]), summary(raw["results"]), summary(srv["results"]) if srv else None))
        print(f"  {n} streams done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    print(
        f"SmolLM2-135M-Instruct Q4_1, {args.tokens} tokens per stream, n_threads={args.threads}, "
        f"llama-cpp-python {llama_cpp.__version__}; load average {load0:.1f} before, {load1:.1f} after "
        f"({os.cpu_count()} cores)\n"
    )
    head = (
        "| streams | lmstream tok/s | TTFT p50 / p99 (ms) | raw serial tok/s | TTFT p50 / p99 (ms) | lmstream / raw |"
    )
    sep = "|---:|---:|---:|---:|---:|---:|"
    if binary:
        head += " llama-server tok/s | TTFT p50 / p99 (ms) | lmstream / llama-server tok/s |"
        sep += "---:|---:|---:|"
    print(head)
    print(sep)
    for n, lm_s, raw_s, srv_s in rows:
        line = f"| {n} | {lm_s[0]:.1f} | {lm_s[1]:.0f} / {lm_s[2]:.0f} | {raw_s[0]:.1f} | {raw_s[1]:.0f} / {raw_s[2]:.0f} |"
        line += f" {lm_s[0] / raw_s[0]:.2f}x |"
        if srv_s is not None:
            line += f" {srv_s[0]:.1f} | {srv_s[1]:.0f} / {srv_s[2]:.0f} | {lm_s[0] / srv_s[0]:.2f}x |"
        print(line)
    if not binary:
        print("\n(llama-server not found: set LLAMA_SERVER or build it as the docstring says)")
    kv = kv_mb_per_sequence(2048)
    print(f"\nKV cache per extra sequence at n_ctx 2048: {kv:.1f} MB allocated (f16 K and V).")
    if len(rss) > 1:
        lo, hi = min(rss), max(rss)
        per = (rss[hi] - rss[lo]) / (hi - lo)
        print(f"Resident memory after load: {rss[lo]:.0f} MB at parallel={lo}, {rss[hi]:.0f} MB at parallel={hi}")
        print(f"({per:.1f} MB per extra sequence before use: KV pages become resident as they fill).")


if __name__ == "__main__":
    main()
