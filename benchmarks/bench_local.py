"""The embedded model through lmstream vs raw llama-cpp-python, same prompt, same settings.

Each client runs in its own fresh process (llama.cpp's compute threads are per process and
per calling thread, so two clients in one process disturb each other), alternating
raw, lmstream, raw, lmstream, ... so load changes hit both alike; medians are reported.

    python benchmarks/bench_local.py [--tokens 128] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

SYSTEM = "You are a helpful travel guide."
QUESTION = "What are some great activities in Tokyo?"


def raw_child(n: int, threads: int, reps: int) -> list[tuple[int, float, float]]:

    import llama_cpp

    from lmstream.invokers.local import DEFAULT_REPEAT_PENALTY, embedded_model_path

    model = llama_cpp.Llama(
        model_path=str(embedded_model_path("smollm2-135m")),
        n_ctx=2048,
        verbose=False,
        n_threads=threads,
        n_threads_batch=threads,
    )
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]

    def once(k: int) -> tuple[int, float, float]:
        t0 = time.perf_counter()
        first = None
        count = 0
        for chunk in model.create_chat_completion(
            messages=msgs, stream=True, max_tokens=k, temperature=0.0, repeat_penalty=DEFAULT_REPEAT_PENALTY
        ):
            if chunk["choices"][0]["delta"].get("content"):
                if first is None:
                    first = time.perf_counter()
                count += 1
        assert first is not None
        return count, first - t0, time.perf_counter() - t0

    once(8)  # warm-up
    return [once(n) for _ in range(reps)]


def lmstream_child(n: int, threads: int, reps: int) -> list[tuple[int, float, float]]:
    from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker

    invoker = build_lm_invoker("local/smollm2-135m", config={"n_threads": threads, "n_threads_batch": threads})
    invoker.load()  # type: ignore[attr-defined]
    lmrp = LMRequestProcessor(PromptBuilder(system_template=SYSTEM, user_template="{question}"), invoker)

    async def once(k: int) -> tuple[int, float, float]:
        emitter = EventEmitter.with_stream_handler()
        t0 = time.perf_counter()
        task = asyncio.create_task(
            lmrp.process(
                question=QUESTION, event_emitter=emitter, hyperparameters={"max_tokens": k, "temperature": 0.0}
            )
        )
        first = None
        parts = []
        async for ev in emitter.stream():
            if ev.type == "response":
                if first is None:
                    first = time.perf_counter()
                parts.append(ev.value)
        end = time.perf_counter()
        out = await task
        assert first is not None and "".join(parts) == out.text
        return len(parts), first - t0, end - t0

    async def main() -> list[tuple[int, float, float]]:
        await once(8)  # warm-up
        return [await once(n) for _ in range(reps)]

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=4, help="processes per client")
    ap.add_argument("--reps", type=int, default=3, help="requests per process")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads for both (default: lmstream's)")
    ap.add_argument("--child", choices=["raw", "lmstream"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads is None:
        from lmstream.invokers._llama.chat import default_threads

        args.threads = default_threads()
    if args.child:
        fn = raw_child if args.child == "raw" else lmstream_child
        print(json.dumps(fn(args.tokens, args.threads, args.reps)))
        return
    results: dict[str, list[tuple[int, float, float]]] = {"raw": [], "lmstream": []}
    for _ in range(args.runs):
        for client in ("raw", "lmstream"):
            cmd = [sys.executable, __file__, "--child", client, "--tokens", str(args.tokens), "--reps", str(args.reps)]
            cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
            results[client] += [tuple(r) for r in json.loads(out.stdout.strip().splitlines()[-1])]
    counts = {c: {r[0] for r in rs} for c, rs in results.items()}
    assert counts["raw"] == counts["lmstream"], f"token counts differ: {counts}"
    tps = {c: statistics.median(r[0] / r[2] for r in rs) for c, rs in results.items()}
    ttft = {c: statistics.median(r[1] for r in rs) for c, rs in results.items()}
    n = args.runs * args.reps
    print(
        f"embedded model SmolLM2-135M-Instruct Q4_1, {args.tokens} tokens, greedy, "
        f"n_threads={args.threads}, median of {n} requests per client "
        f"({args.runs} alternating processes each)\n"
    )
    print("| client | tokens/s | time to first token (ms) |")
    print("|---|---:|---:|")
    print(f"| raw llama-cpp-python (create_chat_completion stream) | {tps['raw']:.1f} | {ttft['raw'] * 1000:.1f} |")
    print(f"| lmstream (LMRP + events + stream()) | {tps['lmstream']:.1f} | {ttft['lmstream'] * 1000:.1f} |")
    print(f"\nlmstream / raw tokens/s: {tps['lmstream'] / tps['raw']:.1%} (target >= 97%)")
    print(f"lmstream time-to-first-token overhead: {(ttft['lmstream'] - ttft['raw']) * 1000:+.2f} ms (target < 5 ms)")


if __name__ == "__main__":
    main()
