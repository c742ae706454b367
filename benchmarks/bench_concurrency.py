"""Many concurrent paced streams in ONE client process: delivery, added latency, memory.

    python benchmarks/bench_concurrency.py                        # 1,000 streams x 50 tokens, 100 ms pacing
    python benchmarks/bench_concurrency.py --streams 200 --tokens 50 --clients floor,openai,lmstream

Method:
  * benchmarks/sse_server.py runs in its own process (pinned to the last CPU when there are 2+),
    each client in a fresh worker process (pinned to the other CPUs).
  * Every stream asks the server for `hold=1`: the server sends the response headers and holds the
    stream. When the server reports all --streams streams held (GET /stats), the worker reads its
    RSS (VmRSS from /proc/self/status): (RSS with all streams started and idle − RSS after a
    warm-up stream) / --streams = memory per idle stream (a client whose connection pool is smaller
    than --streams is noted: its extra streams are idle waiting for a connection instead). The worker then calls /release.
  * The server then paces every stream at one token per --interval seconds (one ticker, streams
    spread over --slots evenly spaced phases of the interval), --tokens tokens each. Each token's text is the server's
    `time.time()` at the moment it was written; the client records `time.time()` when its own
    loop receives the token, so added latency = client receive time − server send time (same
    host clock). This includes loopback delivery and every layer of the client library.
  * Asserts every stream got exactly --tokens tokens; reports p50/p99/max added latency, client
    CPU per token over the streaming phase (process_time), and peak RSS.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_stream import _affinity, start_server  # noqa: E402


def _rss_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak, KiB on Linux (fallback)


def _raise_nofile(want: int) -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except Exception:
        pass


async def _http_get(port: int, path: str) -> dict:
    """Tiny stdlib GET to the server's control endpoints (not through the client under test)."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        n = int(next(ln for ln in head.decode().split("\r\n") if ln.lower().startswith("content-length")).split(":")[1])
        return json.loads(await r.readexactly(n))
    finally:
        w.close()


class _Sink:
    """`out` for one stream: on each delta, record now − server send time of every token in it."""

    __slots__ = ("lat", "n")

    def __init__(self, lat: list) -> None:
        self.lat = lat
        self.n = 0

    def append(self, text: str) -> None:
        now = time.time()
        for tok in text.split():
            self.lat.append(now - float(tok))
            self.n += 1


def worker(args: argparse.Namespace) -> dict:
    import gc

    from _clients import CLIENTS

    _raise_nofile(args.streams * 2 + 1000)
    port = args.port
    plain = f"http://127.0.0.1:{port}/ts=1"
    paced = f"http://127.0.0.1:{port}/hold=1/delay={args.interval}/ts=1"

    async def go() -> dict:
        res: dict = {"notes": []}
        make = CLIENTS[args.client].make
        # one client object for the warm-up and one for the paced run (base URLs differ)
        run0, close0 = await make(plain, args.streams)
        warm = _Sink([])
        await run0(20, warm)
        await close0()
        run, aclose = await make(paced, args.streams)
        gc.collect()
        rss0 = _rss_kib()

        lat: list[float] = []
        sinks = [_Sink(lat) for _ in range(args.streams)]
        errors: list[str] = []

        async def one(s: _Sink) -> None:
            try:
                await run(args.tokens, s)
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}"[:200])

        t_open = time.perf_counter()
        tasks = [asyncio.create_task(one(s)) for s in sinks]
        # wait (bounded) until the server holds every stream
        held = 0
        deadline = time.monotonic() + args.open_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            held = (await _http_get(port, "/stats"))["held"]
            if held >= args.streams or all(t.done() for t in tasks):
                break
        res["open_s"] = time.perf_counter() - t_open
        res["held"] = held
        await asyncio.sleep(0.2)  # let every task settle into its idle await
        res["rss_idle_kib"] = _rss_kib()
        res["rss_base_kib"] = rss0
        if held < args.streams:
            res["notes"].append(f"only {held}/{args.streams} streams open at once after {args.open_timeout:.0f}s")

        prof = None
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c0 = time.process_time()
        w0 = time.perf_counter()
        if args.gc_freeze:  # a server's usual set-up: long-lived objects out of the collector's way
            gc.freeze()
        await _http_get(port, "/release")
        budget = args.tokens * args.interval + args.drain_timeout
        _, pending = await asyncio.wait(tasks, timeout=budget)
        if pending and held < args.streams:
            # streams that were queued behind a connection-pool limit get held on arrival: keep releasing
            end = time.monotonic() + budget
            while pending and time.monotonic() < end:
                await _http_get(port, "/release")
                _, pending = await asyncio.wait(pending, timeout=0.2)
        for t in pending:
            t.cancel()
        res["cpu_s"] = time.process_time() - c0
        res["wall_s"] = time.perf_counter() - w0
        if prof is not None:
            import io
            import pstats

            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
            print(buf.getvalue(), file=sys.stderr)
        await aclose()
        counts = [s.n for s in sinks]
        res["tokens_total"] = sum(counts)
        res["streams_complete"] = sum(1 for c in counts if c == args.tokens)
        if pending:
            res["notes"].append(f"{len(pending)} streams unfinished after {budget:.0f}s")
        if errors:
            res["notes"].append(f"{len(errors)} stream errors, e.g. {errors[0]}")
        lat.sort()
        if lat:
            q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
            res.update(
                p50_ms=q(0.50) * 1e3,
                p90_ms=q(0.90) * 1e3,
                p99_ms=q(0.99) * 1e3,
                max_ms=lat[-1] * 1e3,
                mean_ms=statistics.fmean(lat) * 1e3,
            )
        import resource

        res["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return res

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--tokens", type=int, default=50, help="tokens per stream (default 50)")
    ap.add_argument(
        "--interval",
        type=float,
        default=0.1,
        help="seconds between tokens of one stream (default 0.1: 10,000 tokens/s offered at 1,000 "
        "streams; 0.02 = 50,000 tokens/s saturates even the floor on one 2-core box)",
    )
    ap.add_argument(
        "--slots",
        type=int,
        default=100,
        help="server pacing phases per interval (default 100): streams are spread over this many "
        "evenly spaced send times, so at most streams/slots tokens leave the server at once",
    )
    ap.add_argument("--clients", default="floor,lmstream", help="comma list from benchmarks/_clients.py")
    ap.add_argument("--open-timeout", type=float, default=15.0, help="max seconds to open all streams")
    ap.add_argument("--drain-timeout", type=float, default=60.0, help="extra seconds allowed past the pacing time")
    ap.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once every stream is open, in every client (as a server would after start-up): "
        "full collections over thousands of live connections are the largest source of tail latency",
    )
    ap.add_argument("--p99-target-ms", type=float, default=5.0)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--profile", action="store_true", help="(with --worker) cProfile the streaming phase to stderr")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    from _clients import CLIENTS

    _raise_nofile(args.streams * 2 + 1000)
    t_start = time.monotonic()
    server_cpus = client_cpus = None
    if not args.no_pin and hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) >= 2:
            server_cpus, client_cpus = {allowed[-1]}, set(allowed[:-1])
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("PYTHONWARNINGS", "ignore")
    timeout = args.open_timeout + args.tokens * args.interval + 2 * args.drain_timeout + 60

    rows: dict[str, dict] = {}
    for name in [c.strip() for c in args.clients.split(",") if c.strip()]:
        client = CLIENTS.get(name)
        if client is None or client.missing():
            rows[name] = {"notes": ["skipped: not installed" if client else "unknown client"]}
            continue
        # a fresh server per client: no state (held streams, pacers) leaks between runs
        server, port = start_server(args.tokens, server_cpus, extra=["--slots", str(args.slots)])
        try:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "--client",
                name,
                "--port",
                str(port),
                "--streams",
                str(args.streams),
                "--tokens",
                str(args.tokens),
                "--interval",
                str(args.interval),
                "--open-timeout",
                str(args.open_timeout),
                "--drain-timeout",
                str(args.drain_timeout),
                *(["--gc-freeze"] if args.gc_freeze else []),
            ]
            try:
                p = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=_affinity(client_cpus)
                )
                out = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
                if out:
                    rows[name] = json.loads(out[-1][7:])
                else:
                    err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
                    rows[name] = {"notes": [f"failed: {err[:160]}"]}
            except subprocess.TimeoutExpired:
                rows[name] = {"notes": [f"timeout after {timeout:.0f}s"]}
        finally:
            server.kill()
            server.wait(timeout=10)
        r = rows[name]
        print(f"[{name}] {json.dumps(r)}", file=sys.stderr)

    total = args.streams * args.tokens
    print()
    print(
        f"{args.streams:,} concurrent streams x {args.tokens} tokens, one token per {args.interval * 1e3:.0f} ms "
        f"per stream (~{args.streams / args.interval:,.0f} tokens/s offered, spread over {args.slots} phases), one client process; "
        f"server in a separate process{' on another CPU' if server_cpus else ''}."
    )
    print()
    print(
        "| client | tokens delivered | all delivered | added latency p50 / p99 / max ms | p99 < "
        f"{args.p99_target_ms:g} ms | tokens/s | µs CPU/token | client CPU % | RSS per idle stream KiB | peak RSS MiB "
        "| open all s | notes |"
    )
    print("|---|---:|:-:|---:|:-:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        if "tokens_total" not in r:
            print(f"| {name} | — | — | — | — | — | — | — | — | — | — | {'; '.join(r.get('notes', []))} |")
            continue
        ok = r["tokens_total"] == total and r["streams_complete"] == args.streams
        lat = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['max_ms']:.1f}" if "p50_ms" in r else "—"
        p99ok = "yes" if r.get("p99_ms", 1e9) < args.p99_target_ms else "NO"
        # every started stream is idle (held by the server, or queued for a connection): divide by all
        per_idle = (r["rss_idle_kib"] - r["rss_base_kib"]) / args.streams
        cpu_tok = r["cpu_s"] / max(1, r["tokens_total"]) * 1e6
        print(
            f"| {name} | {r['tokens_total']:,} / {total:,} | {'yes' if ok else 'NO'} | {lat} | {p99ok} | "
            f"{r['tokens_total'] / r['wall_s']:,.0f} | {cpu_tok:.1f} | {100 * r['cpu_s'] / r['wall_s']:.0f} | {per_idle:.1f} | {r['peak_rss_kib'] / 1024:.0f} | {r['open_s']:.2f} | "
            f"{'; '.join(r['notes'])} |"
        )
    print()
    print(
        f"(total {time.monotonic() - t_start:.0f}s; RSS per idle stream = (RSS with {args.streams} held streams − "
        "RSS after warm-up) / streams started; µs CPU/token = client process CPU over the streaming phase / tokens)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
