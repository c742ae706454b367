"""lmstream's client CPU per streamed token with OpenTelemetry absent, idle and on, side by side.

    python benchmarks/bench_otel.py                      # 20,000-token stream, 7 rounds
    python benchmarks/bench_otel.py --tokens 5000 --rounds 3

Same method as bench_stream.py (a fresh client process per measurement, server pinned to another
CPU, `time.process_time()` around one stream after a warm-up), but the four modes are measured
in interleaved rounds (mode A, B, C, D, then A, B, C, D, ...), so load from other processes on a
shared machine falls on every mode alike. Modes (benchmarks/_clients.py):

  lmstream-no-otel     opentelemetry-api hidden from imports: "not installed"
  lmstream             installed, never imported by the application (lmstream does not import it)
  lmstream-otel-unset  the application imported OpenTelemetry but configured no provider
  lmstream-otel        SDK tracer and meter providers configured: every request traced
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODES = ["lmstream-no-otel", "lmstream", "lmstream-otel-unset", "lmstream-otel"]


def main(argv: list[str] | None = None) -> int:
    from bench_stream import measure_cpu, start_server

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20000, help="tokens in the measured stream (default 20000)")
    ap.add_argument("--warmup", type=int, default=2000, help="tokens in the warm-up request (default 2000)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per child process")
    ap.add_argument("--budget", type=float, default=600.0, help="stop starting new rounds after this many seconds")
    args = ap.parse_args(argv)

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpus, client_cpus = ({allowed[-1]}, set(allowed[:-1])) if len(allowed) >= 2 else (None, None)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    server, port = start_server(args.tokens, server_cpus)
    base_url = f"http://127.0.0.1:{port}"
    us: dict[str, list[float]] = {m: [] for m in MODES}
    t0 = time.monotonic()
    try:
        for r in range(args.rounds):
            if time.monotonic() - t0 > args.budget:
                print(f"budget exhausted after {r} rounds", file=sys.stderr)
                break
            for mode in MODES:
                res, err = measure_cpu(mode, base_url, args.tokens, args.warmup, args.timeout, client_cpus, env)
                if res is None:
                    raise SystemExit(f"{mode}: {err}")
                us[mode].append(res["cpu_s"] / args.tokens * 1e6)
            print(f"round {r + 1}: " + ", ".join(f"{m} {us[m][-1]:.2f}" for m in MODES), file=sys.stderr)
    finally:
        server.kill()
        server.wait(timeout=10)

    base = statistics.median(us[MODES[0]])
    print()
    print(
        f"lmstream client CPU per streamed token, {args.tokens:,}-token stream, "
        f"{len(us[MODES[0]])} interleaved rounds (fresh process each); server on another CPU."
    )
    print()
    print("| mode | µs CPU/token (median) | min | vs not installed | runs |")
    print("|---|---:|---:|---:|---|")
    for m in MODES:
        med = statistics.median(us[m])
        runs = "/".join(f"{x:.1f}" for x in us[m])
        print(f"| {m} | {med:.2f} | {min(us[m]):.2f} | {med / base - 1:+.1%} | {runs} |")
    print(f"\n(total {time.monotonic() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
