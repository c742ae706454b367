"""Resumable streams on Redis: commands per token (batched vs one XADD per token), memory per
finished request, and latency added by going through Redis, against a real redis-server.

    python benchmarks/bench_redis.py                          # 200 streams x 100 tokens
    python benchmarks/bench_redis.py --streams 1000 --tokens 50 --interval 0.1

Method:
  * A throwaway Debian redis-server on a free loopback port (tests/redis_server.py; no persistence).
  * Commands: --streams producers each write --tokens text deltas (one every --interval seconds,
    started at spread-out phases) plus a status, a tool call and done, through `RedisEventHandler`
    (batched, default flush 5 ms) and through a naive handler awaiting one XADD per event (the
    per-token design). Commands counted by Redis itself (INFO commandstats), split into what the
    producers send and what Redis runs (a flush is one EVALSHA running XADD/GET/EXPIRE inside).
  * Memory: MEMORY USAGE of every finished stream (kept for its TTL) / --streams.
  * Latency: during each run one `RedisStreamReader` per stream follows it live through one
    multiplexed hub (batched: XREAD of the streams the producers PUBLISHed as changed; naive: one
    XREAD BLOCK over every live stream); added latency = reader's receive time − the event's creation time (same clock), i.e.
    everything the in-process path does not do: batching wait, XADD, XREAD wake-up, decoding.
    Asserts every reader got every event exactly once and in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "src"), ROOT]

import redis.asyncio as aioredis  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

from lmstream.events import BaseEventHandler, Event, EventEmitter  # noqa: E402
from lmstream.events.event import _now  # noqa: E402
from lmstream.redis import Keys, RedisEventHandler, RedisOptions, RedisStreamReader  # noqa: E402
from lmstream.redis.codec import TERMINAL_TYPES, encode_events  # noqa: E402


class NaiveHandler(BaseEventHandler):
    """The per-token design: one awaited XADD (+ EXPIRE at the end) per event."""

    def __init__(self, redis: aioredis.Redis, chat_id: str) -> None:
        super().__init__()
        self.redis = redis
        keys = Keys("naive")
        self.key = keys.stream(chat_id)
        self.lease_key = keys.lease(chat_id)
        self.n = 0

    async def start(self) -> None:
        """A lease, only so that the same reader can follow these streams live."""
        await self.redis.set(self.lease_key, "1", px=60_000)

    async def emit(self, event: Event) -> None:
        fields: dict[Any, Any] = {"s": self.n, "n": 1, "e": encode_events([event])}
        if event.type in TERMINAL_TYPES:
            fields["t"] = "1"
        await self.redis.xadd(self.key, fields, maxlen=10_000, approximate=True)
        self.n += 1
        if event.type in TERMINAL_TYPES:
            await self.redis.expire(self.key, 3600)
            await self.redis.delete(self.lease_key)


async def produce(emitter: EventEmitter, n_events: int, tokens: int, interval: float, phase: float, i: int) -> None:
    await asyncio.sleep(phase)
    rid = f"req_{i}"
    meta = {"request_id": rid, "block_id": "b", "step": 1}
    await emitter.emit(Event("started", "status", metadata={"request_id": rid}))
    t0 = time.perf_counter()
    for k in range(tokens):
        # paced on a fixed schedule, so a slow flush does not stretch the stream
        delay = t0 + k * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await emitter.emit(Event(f" tok{k}", "response", metadata=meta))
        if k == tokens // 2:
            await emitter.emit(
                Event({"id": "c", "name": "f", "arguments": {}}, "tool_call", metadata={"request_id": rid})
            )
    await emitter.emit(Event("", "done", metadata={"request_id": rid}))


async def commands(r: aioredis.Redis) -> dict[str, int]:
    stats = await r.info("commandstats")
    return {k[len("cmdstat_") :]: int(v["calls"]) for k, v in stats.items()}


ISSUED = ("evalsha", "eval", "xadd", "expire", "publish")  # what a producer sends (naive: xadd + expire)
INNER = ("get", "set", "pexpire", "del")  # run inside the flush script
READS = ("xread", "xrange", "exists")


async def redis_cpu(r: aioredis.Redis) -> float:
    """CPU seconds the Redis server has used (user + system)."""
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def producer_main(args: argparse.Namespace) -> None:
    """Child process: write every stream (batched or naive) and print what it sent."""
    r = aioredis.Redis.from_url(args.produce, max_connections=20_000)
    phases = [args.interval * i / args.streams for i in range(args.streams)]
    if args.design == "naive":
        hs: list[Any] = [NaiveHandler(r, f"c{i}") for i in range(args.streams)]
    else:
        hs = [RedisEventHandler(r, f"c{i}") for i in range(args.streams)]
    for h in hs:
        await h.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the loop keeps running: leases stay renewed
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            produce(EventEmitter([h]), args.tokens + 3, args.tokens, args.interval, phases[i], i)
            for i, h in enumerate(hs)
        )
    )
    for h in hs:
        if isinstance(h, RedisEventHandler):
            await h.aclose()
    entries = sum(getattr(h, "entries_written", h.n if isinstance(h, NaiveHandler) else 0) for h in hs)
    print(json.dumps({"wall": time.perf_counter() - t0, "entries": entries}), flush=True)
    await r.aclose()


async def one_design(args: argparse.Namespace, url: str, design: str, r: aioredis.Redis) -> dict[str, Any]:
    await r.flushall()
    await r.config_resetstat()
    n_events = args.tokens + 3
    child = subprocess.Popen(
        [sys.executable, __file__, "--produce", url, "--design", design, "--streams", str(args.streams),
         "--tokens", str(args.tokens), "--interval", str(args.interval)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "ready"
    lat: list[float] = []
    prefix = "naive" if design == "naive" else "lmstream"
    # as a web node reads: one connection for all; the naive producers do not PUBLISH, so their
    # reader uses the one-XREAD-BLOCK-over-every-stream hub instead of notifications
    reader = RedisStreamReader(r, options=RedisOptions(prefix=prefix), multiplex=True, notified=design != "naive")

    async def follow(i: int) -> int:
        n = 0
        async for item in reader.read(f"c{i}"):
            lat.append(_now() - item.event.epoch)
            n += 1
        return n

    readers = [asyncio.create_task(follow(i)) for i in range(args.streams)]
    await asyncio.sleep(0.3)
    before = await commands(r)
    cpu0 = await redis_cpu(r)
    child.stdin.write("go\n")
    child.stdin.flush()
    line = await asyncio.to_thread(child.stdout.readline)
    child.wait(30)
    info = json.loads(line)
    counts = await asyncio.gather(*readers)
    await reader.aclose()
    assert all(c == n_events for c in counts), f"a reader missed events: {set(counts)}"
    after = await commands(r)
    cpu = await redis_cpu(r) - cpu0
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    if design == "naive":
        issued = delta.get("xadd", 0) + delta.get("expire", 0)
        executed = issued
    else:  # the producer's flushes are EVALSHA (the reaper's EVAL only runs for dead producers),
        # plus one PUBLISH per pipelined round trip naming the streams it appended to
        issued = delta.get("evalsha", 0) + delta.get("publish", 0)
        executed = issued + sum(delta.get(k, 0) for k in ("xadd", "expire", *INNER))
    reads = sum(delta.get(k, 0) for k in READS) + delta.get("eval", 0)
    mem = 0
    for i in range(args.streams):
        mem += int(await r.memory_usage(Keys(prefix).stream(f"c{i}")) or 0)
    return {
        **info,
        "issued": issued,
        "executed": executed,
        "reads": reads,
        "mem": mem / args.streams,
        "cpu": cpu,
        "latency": sorted(lat),
    }


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    r = aioredis.Redis.from_url(url, max_connections=20_000)
    try:
        naive = await one_design(args, url, "naive", r)
        batched = await one_design(args, url, "batched", r)
    finally:
        await r.aclose()
    return {"naive": naive, "batched": batched}


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.02, help="seconds between tokens of one stream")
    ap.add_argument("--produce", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--design", default="batched", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        asyncio.run(producer_main(args))
        return
    with RedisServer() as srv:
        res = asyncio.run(run(args, srv.url))
    tokens = args.streams * args.tokens
    b, n = res["batched"], res["naive"]
    print(
        f"redis-server on loopback; {args.streams} concurrent streams x {args.tokens} tokens "
        f"(+3 other events), one token per {args.interval * 1000:.0f} ms per stream; producers in one "
        "process, readers in another\n"
    )
    print(
        f"{'design':<28} {'sent':>6} {'/token':>7} {'run in Redis':>12} {'/token':>7} {'Redis CPU/token':>15} "
        f"{'entries':>8} {'memory/request':>15} {'latency p50':>12} {'p99':>9}"
    )
    for name, d in (("naive: one XADD per event", n), ("lmstream: batched (5 ms)", b)):
        lat = d["latency"]
        print(
            f"{name:<28} {d['issued']:>6} {d['issued'] / tokens:>7.3f} {d['executed']:>12} "
            f"{d['executed'] / tokens:>7.3f} {d['cpu'] / tokens * 1e6:>12.1f} µs {d['entries']:>8} "
            f"{d['mem'] / 1024:>11.1f} KiB {pct(lat, 0.5):>9.2f} ms {pct(lat, 0.99):>6.2f} ms"
        )
    print(
        "\nsent = commands the producers send (one EVALSHA per flush + one PUBLISH per pipelined round trip for "
        "lmstream); run in Redis adds the commands the flush script runs; Redis CPU includes the live readers (naive: "
        "one XREAD BLOCK over every live stream per read; lmstream: one XREAD over the streams announced changed, "
        f"plus every stream once a second in slices of 100; {n['reads']} / {b['reads']} reader commands); "
        "latency = producer event -> reader in the other process."
    )
    print(f"(producer wall time: batched {b['wall']:.2f} s, naive {n['wall']:.2f} s)")


if __name__ == "__main__":
    main()
