"""The embedded model through lmstream vs raw llama-cpp-python, same prompt, same settings.

Prints tokens/s and time to first token for each, and their ratio. Both run in this process,
interleaved (raw, lmstream, raw, lmstream, ...) so load changes hit both alike; medians.

    python benchmarks/bench_local.py [--tokens 128] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker

SYSTEM = "You are a helpful travel guide."
QUESTION = "What are some great activities in Tokyo?"


def raw_run(model, n: int) -> tuple[int, float, float]:
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    t0 = time.perf_counter()
    first = None
    count = 0
    for chunk in model.create_chat_completion(messages=msgs, stream=True, max_tokens=n, temperature=0.0):
        if chunk["choices"][0]["delta"].get("content"):
            if first is None:
                first = time.perf_counter()
            count += 1
    end = time.perf_counter()
    assert first is not None
    return count, first - t0, end - t0


async def lmstream_run(lmrp: LMRequestProcessor, n: int) -> tuple[int, float, float, str]:
    emitter = EventEmitter.with_stream_handler()
    t0 = time.perf_counter()
    task = asyncio.create_task(
        lmrp.process(question=QUESTION, event_emitter=emitter, hyperparameters={"max_tokens": n, "temperature": 0.0})
    )
    first = None
    count = 0
    async for ev in emitter.stream():
        if ev.type == "response":
            if first is None:
                first = time.perf_counter()
            count += 1
    end = time.perf_counter()
    out = await task
    assert first is not None
    return count, first - t0, end - t0, out.text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    invoker = build_lm_invoker("local/smollm2-135m")
    model = invoker.load()  # type: ignore[attr-defined]
    lmrp = LMRequestProcessor(PromptBuilder(system_template=SYSTEM, user_template="{question}"), invoker)
    raw_run(model, 8)  # warm-up both paths
    asyncio.run(lmstream_run(lmrp, 8))
    raw_tps, raw_ttft, lm_tps, lm_ttft = [], [], [], []
    for _ in range(args.runs):
        n, ttft, total = raw_run(model, args.tokens)
        raw_tps.append(n / total)
        raw_ttft.append(ttft)
        n2, ttft2, total2, _ = asyncio.run(lmstream_run(lmrp, args.tokens))
        lm_tps.append(n2 / total2)
        lm_ttft.append(ttft2)
        assert n2 == n, f"token counts differ: raw {n}, lmstream {n2}"
    r_tps, l_tps = statistics.median(raw_tps), statistics.median(lm_tps)
    r_ttft, l_ttft = statistics.median(raw_ttft), statistics.median(lm_ttft)
    print(f"embedded model SmolLM2-135M-Instruct Q4_1, {args.tokens} tokens, median of {args.runs} interleaved runs\n")
    print("| client | tokens/s | time to first token (ms) |")
    print("|---|---:|---:|")
    print(f"| raw llama-cpp-python | {r_tps:.1f} | {r_ttft * 1000:.1f} |")
    print(f"| lmstream (LMRP + events + stream()) | {l_tps:.1f} | {l_ttft * 1000:.1f} |")
    print(f"\nlmstream / raw tokens/s: {l_tps / r_tps:.1%} (target >= 97%)")
    print(f"lmstream time-to-first-token overhead: {(l_ttft - r_ttft) * 1000:+.2f} ms (target < 5 ms)")


if __name__ == "__main__":
    main()
