"""The synchronous stream, measured: per-event cost against the async stream, and time to the
first event against a peer's sync stream (pydantic-ai's `run_stream_sync`), side by side.

    python benchmarks/bench_sync.py                         # lmstream only
    python benchmarks/bench_sync.py --peer-python PATH      # PATH: a python with pydantic-ai-slim[openai]

1. Per event: `ScriptedLMInvoker` streams `--events` deltas with no delay; `lmrp.stream()` under
   `asyncio.run` against `lmrp.stream_sync()` from plain code; medians of `--rounds`.
2. First event: a Chat Completions replay (tests/wire) streams `--chunks` deltas `--gap` seconds
   apart; each client asks once per round and reports when its first text arrived and when the
   answer ended, from its own clock. The peer runs in its own interpreter (its own venv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.wire import fixtures as fx  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker  # noqa: E402
from lmstream.testing import ScriptedLMInvoker  # noqa: E402

KEY = "sk-bench-0123456789"

PEER = r"""
import json, sys, time
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=sys.argv[1], api_key=sys.argv[2]))
agent = Agent(model)
for _ in agent.run_stream_sync("warm up").stream_text(delta=True):  # as lmstream's client is warmed up
    pass
t0 = time.perf_counter()
first = None
result = agent.run_stream_sync("Tokyo?")
for _ in result.stream_text(delta=True):
    if first is None:
        first = time.perf_counter() - t0
print(json.dumps({"first": first, "total": time.perf_counter() - t0}))
"""


def per_event(events: int, rounds: int) -> dict[str, tuple[float, int]]:
    deltas = ["x"] * events
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), ScriptedLMInvoker(deltas))

    async def run_async() -> int:
        n = 0
        async with lmrp.stream(q="hi") as s:
            async for _ in s:
                n += 1
        return n

    def run_sync() -> int:
        n = 0
        with lmrp.stream_sync(q="hi") as s:
            for _ in s:
                n += 1
        return n

    out: dict[str, list[float]] = {"async stream()": [], "stream_sync()": []}
    seen: dict[str, int] = {}
    run_sync()  # warm-up: starts the background loop
    for _ in range(rounds):
        t = time.perf_counter()
        seen["async stream()"] = asyncio.run(run_async())
        out["async stream()"].append((time.perf_counter() - t) / events * 1e6)
        t = time.perf_counter()
        seen["stream_sync()"] = run_sync()
        out["stream_sync()"].append((time.perf_counter() - t) / events * 1e6)
    return {k: (statistics.median(v), seen[k]) for k, v in out.items()}


def first_event(chunks: int, gap: float, rounds: int, peer_python: str | None) -> dict[str, tuple[float, float]]:
    text = tuple(f" w{i}" for i in range(chunks))
    script = Script(chunks=fx.openai_chat_text(text, usage=fx.openai_chat_usage(10, chunks)), delay_between=gap)
    results: dict[str, list[tuple[float, float]]] = {"lmstream stream_sync()": []}
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(script)
        url = srv.base_url + "/v1"
        inv = build_lm_invoker("openai-chat/gpt-4o-mini", credentials=KEY, config={"base_url": url})
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv)
        lmrp.process_sync(q="warm up")
        peer_name = None
        if peer_python:
            version = subprocess.run(
                [peer_python, "-c", "import importlib.metadata as m; print(m.version('pydantic-ai-slim'))"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            peer_name = f"pydantic-ai {version} run_stream_sync()"
            results[peer_name] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            first = None
            with lmrp.stream_sync(q="Tokyo?") as s:
                for event in s:
                    if first is None and event.type == "response":
                        first = time.perf_counter() - t0
            results["lmstream stream_sync()"].append((first or 0.0, time.perf_counter() - t0))
            if peer_python and peer_name:
                proc = subprocess.run([peer_python, "-c", PEER, url, KEY], capture_output=True, text=True, timeout=60)
                got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
                results[peer_name].append((got["first"], got["total"]))
    return {
        k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for k, v in results.items() if v
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--peer-python", default=None, help="a python with pydantic-ai-slim[openai] installed")
    args = ap.parse_args()

    costs = per_event(args.events, args.rounds)
    base = costs["async stream()"][0]
    print(f"\nper delta ({args.events} deltas, no delay, median of {args.rounds}; a slower reader gets merged deltas):")
    print("| client | µs/delta | vs async | events received |\n|---|---:|---:|---:|")
    for name, (us, n) in costs.items():
        print(f"| {name} | {us:.1f} | {us / base:.2f}x | {n} |")

    firsts = first_event(args.chunks, args.gap, args.rounds, args.peer_python)
    print(f"\nfirst event ({args.chunks} deltas {args.gap * 1000:.0f} ms apart, median of {args.rounds}):")
    print("| client | first text (s) | answer ends (s) | first / end |\n|---|---:|---:|---:|")
    for name, (first, total) in firsts.items():
        print(f"| {name} | {first:.3f} | {total:.3f} | {first / total:.2f} |")


if __name__ == "__main__":
    main()
