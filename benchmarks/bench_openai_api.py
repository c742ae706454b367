"""`lmstream serve` as an OpenAI-compatible server for the embedded model, vs `llama-server`.

Both servers run the same GGUF (SmolLM2-135M-Instruct Q4_1, the embedded model) with the same
thread count and N parallel sequences, and both are driven the same way: the official `openai`
async SDK, N concurrent `chat.completions.create(stream=True)` calls of 128 tokens each, all
started together. Prints aggregate tokens/s (content chunks / wall time of the slowest stream)
and time to first token p50/p99, side by side, with the ratio lmstream / llama-server.

    python benchmarks/bench_openai_api.py [--streams 1,4,8,16] [--tokens 128] [--threads N]

Each server runs in a fresh process, one after the other (never both at once), warmed up with
one short request. Sampling: temperature 0.8, top-p 0.95, a seed per stream (what a client may
send to `lmstream serve`; each server keeps its own defaults for the rest: lmstream's repeat
penalty 1.1, llama-server's top-k 40 / min-p 0.05). `llama-server` is found as in
`bench_local_parallel.py` ($LLAMA_SERVER, then ~/.cache/lmstream-bench/llama-server; its
docstring says how to build it from the llama-cpp-python sdist, the same llama.cpp commit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
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
Result = tuple[int, float, float]  # (content chunks, ttft from t0, end from t0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: not ready after {timeout} s")
        time.sleep(0.2)


def lmstream_server(n: int, threads: int, port: int) -> tuple[subprocess.Popen[bytes], str, str]:
    cmd = [sys.executable, "-m", "lmstream", "serve", "--model", "local/smollm2-135m", "--port", str(port)]
    cmd += ["--parallel", str(n), "--threads", str(threads), "--n-ctx", "2048", "--max-concurrent", "256"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/healthz", proc)
    return proc, f"{base}/v1", "local/smollm2-135m"


def llama_server(n: int, threads: int, port: int, binary: str) -> tuple[subprocess.Popen[bytes], str, str]:
    from lmstream.invokers.local import embedded_model_path

    cmd = [binary, "-m", str(embedded_model_path("smollm2-135m")), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--parallel", str(n), "-c", str(2048 * n), "-t", str(threads), "-tb", str(threads), "--no-webui"]
    env = {**os.environ, "LD_LIBRARY_PATH": str(Path(binary).resolve().parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/health", proc)
    return proc, f"{base}/v1", "smollm2"


async def drive(base_url: str, model: str, n: int, tokens: int) -> list[Result]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)

    async def one(i: int, t0: float, k: int) -> Result:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=k,
            temperature=0.8,
            top_p=0.95,
            seed=1000 + i,
            stream=True,
        )
        first = None
        count = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
                if first is None:
                    first = time.perf_counter() - t0
        assert first is not None, "no token arrived"
        return count, first, time.perf_counter() - t0

    try:
        await one(0, time.perf_counter(), 4)  # warm-up: the first decode sets llama.cpp up
        t0 = time.perf_counter()
        return list(await asyncio.gather(*[one(i, t0, tokens) for i in range(n)]))
    finally:
        await client.close()


def run(kind: str, n: int, args: argparse.Namespace, binary: str | None) -> list[Result]:
    port = free_port()
    if kind == "lmstream":
        proc, base, model = lmstream_server(n, args.threads, port)
    else:
        assert binary is not None
        proc, base, model = llama_server(n, args.threads, port, binary)
    try:
        return asyncio.run(drive(base, model, n, args.tokens))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def summary(results: list[Result]) -> tuple[float, float, float]:
    total = sum(r[0] for r in results)
    wall = max(r[2] for r in results)
    ttfts = sorted(r[1] for r in results)
    p99 = ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))]
    return total / wall, statistics.median(ttfts) * 1000, p99 * 1000


def find_server() -> str | None:
    for candidate in (os.environ.get("LLAMA_SERVER"), str(Path.home() / ".cache" / "lmstream-bench" / "llama-server")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads for both (default: lmstream's)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.threads is None:
        from lmstream.invokers._llama.chat import default_threads

        args.threads = default_threads()
    import llama_cpp
    import openai

    binary = find_server()
    if binary is None:
        print("llama-server not found: set LLAMA_SERVER or build it as bench_local_parallel.py says", file=sys.stderr)
    load0 = os.getloadavg()[0]
    rows: list[tuple[int, tuple[float, float, float], Any]] = []
    for n in [int(s) for s in args.streams.split(",")]:
        lm = summary(run("lmstream", n, args, binary))
        srv = summary(run("server", n, args, binary)) if binary else None
        rows.append((n, lm, srv))
        print(f"  {n} streams done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    print(
        f"SmolLM2-135M-Instruct Q4_1, {args.tokens} tokens per stream, n_threads={args.threads}, clients: openai "
        f"{openai.__version__} AsyncOpenAI, llama-cpp-python {llama_cpp.__version__} (llama-server from its "
        f"sdist); load average {load0:.1f} before, {load1:.1f} after ({os.cpu_count()} cores)\n"
    )
    head = "| streams | lmstream serve tok/s | TTFT p50 / p99 (ms) |"
    sep = "|---:|---:|---:|"
    if binary:
        head += " llama-server tok/s | TTFT p50 / p99 (ms) | lmstream / llama-server tok/s | TTFT p50 ratio |"
        sep += "---:|---:|---:|---:|"
    print(head)
    print(sep)
    for n, lm, srv in rows:
        line = f"| {n} | {lm[0]:.1f} | {lm[1]:.0f} / {lm[2]:.0f} |"
        if srv is not None:
            line += f" {srv[0]:.1f} | {srv[1]:.0f} / {srv[2]:.0f} | {lm[0] / srv[0]:.2f}x | {lm[1] / srv[1]:.2f}x |"
        print(line)


if __name__ == "__main__":
    main()
