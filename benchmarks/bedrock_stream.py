"""Per-delta cost of Bedrock's threaded ConverseStream path against a loopback replay.

    PYTHONPATH=src:. python benchmarks/bedrock_stream.py [--deltas 5000] [--repeats 3]

Three rows, each the median of --repeats warm requests in this process: botocore iterating the
event stream alone (its parsing is the floor), lmstream's `bedrock/` invoker (worker thread +
handoff + accumulator), and lmstream's `openai-chat/` for scale. Every run checks the text.
The replay server (tests/wire) writes 100 events per network write so it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from lmstream import build_lm_invoker


def _grouped(chunks: list[bytes]) -> list[bytes]:
    return [b"".join(chunks[i : i + 100]) for i in range(0, len(chunks), 100)]


def botocore_alone(srv: WireServer, chunks: list[bytes], n: int, repeats: int) -> float:
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=srv.base_url)
    times = []
    for _ in range(repeats + 1):
        srv.enqueue(Script(chunks=chunks))
        t = time.perf_counter()
        text = ""
        for ev in client.converse_stream(modelId="m", messages=[{"role": "user", "content": [{"text": "x"}]}])[
            "stream"
        ]:
            text += ev.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
        times.append(time.perf_counter() - t)
        assert len(text) == n
    client.close()
    return statistics.median(times[1:]) / n


async def lmstream_row(
    srv: WireServer, model: str, config: dict[str, Any], chunks: list[bytes], n: int, repeats: int
) -> float:
    inv = build_lm_invoker(model, credentials="bench", config=config)
    times = []
    for _ in range(repeats + 1):
        srv.enqueue(Script(chunks=chunks))
        t = time.perf_counter()
        out = await inv.invoke("x")
        times.append(time.perf_counter() - t)
        assert len(out.text) == n
    await inv.aclose()
    return statistics.median(times[1:]) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = args.deltas
    deltas = tuple("a" for _ in range(n))
    bedrock = _grouped(es.bedrock_text(deltas))
    chat = _grouped(fx.openai_chat_text(deltas))
    srv = WireServer().start_in_thread()
    try:
        floor = botocore_alone(srv, bedrock, n, args.repeats)
        b = asyncio.run(
            lmstream_row(srv, "bedrock/m", {"region": "us-east-1", "base_url": srv.base_url}, bedrock, n, args.repeats)
        )
        c = asyncio.run(lmstream_row(srv, "openai-chat/m", {"base_url": srv.base_url + "/v1"}, chat, n, args.repeats))
    finally:
        srv.stop()
    print(
        f"{n} deltas, median of {args.repeats}: botocore alone {floor * 1e6:.1f} us/delta, "
        f"lmstream bedrock/ {b * 1e6:.1f} us/delta, lmstream openai-chat/ {c * 1e6:.1f} us/delta"
    )


if __name__ == "__main__":
    main()
