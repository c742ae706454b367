"""Client-side CPU per streamed token, throughput and first-call latency, per client library.

    python benchmarks/bench_stream.py                       # all clients, 20,000 tokens, 3 repeats
    python benchmarks/bench_stream.py --tokens 5000 --repeats 5 --clients floor,openai,lmstream

Method (see benchmarks/README.md):
  * The SSE server (benchmarks/sse_server.py) runs in its own process, pinned to the last CPU
    when there are 2+ CPUs; every client run is a FRESH subprocess pinned to the other CPUs.
  * CPU/token: in the client process, one warm-up request (--warmup tokens), then
    `time.process_time()` (user+sys CPU of the whole client process, all threads) around one
    --tokens request only, divided by --tokens. tokens/s is --tokens / wall time of that request.
  * first-call: a fresh `python -c` probe whose clock starts at its first line (interpreter
    startup itself excluded), then `import asyncio` + the client library, builds the client and
    runs one full --first-tokens request; first-call ms is that whole wall time, import ms the
    import part.
  * Every row is the median of --repeats fresh processes (each measurement separately).
  * Every run checks it got exactly N tokens and the exact expected text (and, for clients that
    return their own final text, e.g. lmstream's `out.text`, that it equals the streamed text).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_CLIENTS = "floor,openai,langchain,litellm,lmstream"


# =========================================================================== worker side
def _check(name: str, n: int, out: list, final) -> None:
    from sse_server import count_tokens, expected_text

    text = "".join(out)
    got = count_tokens(text)
    if got != n or text != expected_text(n):
        raise AssertionError(f"{name}: got {got} tokens ({len(out)} deltas), expected {n}")
    if final is not None and final != text:
        raise AssertionError(f"{name}: final text ({len(final)} chars) != streamed text ({len(text)} chars)")


def worker_cpu(args: argparse.Namespace) -> dict:
    import asyncio

    from _clients import CLIENTS

    async def go() -> dict:
        run, aclose = await CLIENTS[args.client].make(args.base_url)
        try:
            out: list = []
            final = await run(args.warmup, out)
            _check(args.client, args.warmup, out, final)
            out = []
            w0 = time.perf_counter()
            c0 = time.process_time()
            final = await run(args.tokens, out)
            c1 = time.process_time()
            w1 = time.perf_counter()
            _check(args.client, args.tokens, out, final)
            return {"cpu_s": c1 - c0, "wall_s": w1 - w0, "deltas": len(out)}
        finally:
            await aclose()

    return asyncio.run(go())


FIRST_CALL_PROBE = r"""
import time
_t0 = time.perf_counter()
import sys, os
sys.path.insert(0, {here!r})
import _clients
client = _clients.CLIENTS[{client!r}]
import importlib
_ti = time.perf_counter()
import asyncio
for _m in client.requires:
    importlib.import_module(_m)
_t_import = time.perf_counter() - _ti

class _Out(list):
    first = None
    def append(self, x):
        if self.first is None:
            self.first = time.perf_counter()
        list.append(self, x)

async def _go():
    run, aclose = await client.make({base_url!r})
    out = _Out()
    final = await run({n}, out)
    t_end = time.perf_counter()
    try:
        await aclose()
    except Exception:
        pass
    return out, final, t_end

out, final, t_end = asyncio.run(_go())
import json
print("RESULT " + json.dumps({{"first_call_s": t_end - _t0, "import_s": _t_import,
       "ttft_s": (out.first - _t0) if out.first else None, "text": "".join(out), "final": final}}))
"""


# =========================================================================== driver side
def _affinity(cpus):
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(tokens: int, cpus, timeout: float = 15.0, max_seconds: float = 3600, extra: list[str] | None = None):
    cmd = [
        sys.executable,
        os.path.join(HERE, "sse_server.py"),
        "--port",
        "0",
        "--tokens",
        str(tokens),
        "--max-seconds",
        str(max_seconds),
        *(extra or []),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_affinity(cpus))
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("LISTENING"):
            return proc, int(line.split()[1])
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}")


def _run_child(cmd: list[str], timeout: float, cpus, env=None) -> tuple[dict | None, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=_affinity(cpus), env=env)
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout:.0f}s"
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:]), ""
    err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return None, err[:160]


def measure_cpu(
    client: str, base_url: str, tokens: int, warmup: int, timeout: float, cpus, env
) -> tuple[dict | None, str]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "cpu",
        "--client",
        client,
        "--base-url",
        base_url,
        "--tokens",
        str(tokens),
        "--warmup",
        str(warmup),
    ]
    return _run_child(cmd, timeout, cpus, env)


def measure_first_call(client: str, base_url: str, n: int, timeout: float, cpus, env) -> tuple[dict | None, str]:
    from sse_server import expected_text

    code = FIRST_CALL_PROBE.format(here=HERE, client=client, base_url=base_url, n=n)
    res, err = _run_child([sys.executable, "-c", code], timeout, cpus, env)
    if res is not None:
        if res.pop("text") != expected_text(n):
            return None, "first-call: wrong/missing tokens"
        final = res.pop("final")
        if final is not None and final != expected_text(n):
            return None, "first-call: final text != streamed text"
    return res, err


def _fmt(x, spec: str, missing: str = "—") -> str:
    return missing if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=20000, help="tokens in the measured stream (default 20000)")
    ap.add_argument("--warmup", type=int, default=2000, help="tokens in the warm-up request (default 2000)")
    ap.add_argument("--first-tokens", type=int, default=200, help="tokens in the first-call request (default 200)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per client and measurement (median)")
    ap.add_argument("--clients", default=DEFAULT_CLIENTS, help=f"comma list (default {DEFAULT_CLIENTS})")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per child process")
    ap.add_argument("--budget", type=float, default=600.0, help="stop starting new runs after this many seconds")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server / clients to separate CPUs")
    ap.add_argument("--no-first-call", action="store_true", help="skip the first-call measurement")
    ap.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    # worker mode (internal)
    ap.add_argument("--worker", choices=["cpu"], help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--base-url", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "cpu":
        print("RESULT " + json.dumps(worker_cpu(args)), flush=True)
        return 0

    from _clients import CLIENTS

    t_start = time.monotonic()
    ncpu = os.cpu_count() or 1
    server_cpus = client_cpus = None
    if not args.no_pin and ncpu >= 2 and hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) >= 2:
            server_cpus, client_cpus = {allowed[-1]}, set(allowed[:-1])
    env = dict(os.environ)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("LITELLM_TELEMETRY", "False")
    env.setdefault("PYTHONWARNINGS", "ignore")

    names = [c.strip() for c in args.clients.split(",") if c.strip()]
    server, port = start_server(args.tokens, server_cpus)
    base_url = f"http://127.0.0.1:{port}"
    rows: dict[str, dict] = {}
    try:
        for name in names:
            row = rows[name] = {"cpu": [], "wall": [], "first": [], "import": [], "ttft": [], "notes": []}
            client = CLIENTS.get(name)
            if client is None:
                row["notes"].append("unknown client")
                continue
            miss = client.missing()
            if miss:
                row["notes"].append(f"skipped: {', '.join(miss)} not installed")
                print(f"[{name}] skipped ({', '.join(miss)} not installed)", file=sys.stderr)
                continue
            if client.note:
                row["notes"].append(client.note)
            for i in range(args.repeats):
                if time.monotonic() - t_start > args.budget:
                    row["notes"].append("budget exhausted")
                    break
                res, err = measure_cpu(name, base_url, args.tokens, args.warmup, args.timeout, client_cpus, env)
                if res is None:
                    row["notes"].append(f"failed: {err}")
                    print(f"[{name}] cpu run {i + 1} failed: {err}", file=sys.stderr)
                    break
                row["cpu"].append(res["cpu_s"])
                row["wall"].append(res["wall_s"])
                print(
                    f"[{name}] cpu run {i + 1}: {res['cpu_s'] / args.tokens * 1e6:.2f} µs/token, "
                    f"{args.tokens / res['wall_s']:,.0f} tok/s ({res['deltas']} deltas)",
                    file=sys.stderr,
                )
            if args.no_first_call or not row["cpu"]:
                continue
            for i in range(args.repeats):
                if time.monotonic() - t_start > args.budget:
                    break
                res, err = measure_first_call(name, base_url, args.first_tokens, args.timeout, client_cpus, env)
                if res is None:
                    row["notes"].append(f"first-call failed: {err}")
                    print(f"[{name}] first-call {i + 1} failed: {err}", file=sys.stderr)
                    break
                row["first"].append(res["first_call_s"])
                row["import"].append(res["import_s"])
                if res.get("ttft_s") is not None:
                    row["ttft"].append(res["ttft_s"])
                print(
                    f"[{name}] first-call {i + 1}: {res['first_call_s'] * 1e3:.0f} ms "
                    f"(import {res['import_s'] * 1e3:.0f} ms)",
                    file=sys.stderr,
                )
    finally:
        server.kill()
        server.wait(timeout=10)

    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    us = {n: (med(r["cpu"]) / args.tokens * 1e6 if r["cpu"] else None) for n, r in rows.items()}
    first = {n: (med(r["first"]) * 1e3 if r["first"] else None) for n, r in rows.items()}
    floor_us, openai_us, openai_first = us.get("floor"), us.get("openai"), first.get("openai")

    print()
    print(
        f"Client CPU per streamed token — {args.tokens:,}-token stream, median of {args.repeats} fresh processes; "
        f"first call = import + {args.first_tokens}-token request; server in a separate process"
        f"{' (pinned to another CPU)' if server_cpus else ''}."
    )
    print()
    print(
        "| client | µs CPU/token | tokens/s | first-call ms (import ms) | CPU × floor | CPU ÷ openai | first-call × openai | notes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows.items():
        u = us[name]
        tps = args.tokens / med(r["wall"]) if r["wall"] else None
        f = first[name]
        imp = med(r["import"]) * 1e3 if r["import"] else None
        fc = "—" if f is None else f"{f:,.0f} ({imp:,.0f})"
        x_floor = f"{u / floor_us:.1f}×" if u and floor_us else "—"
        # "CPU ÷ openai": how many times cheaper than the openai SDK (>1 = cheaper)
        d_openai = f"{openai_us / u:.2f}" if u and openai_us else "—"
        f_openai = f"{f / openai_first:.2f}×" if f and openai_first else "—"
        notes = "; ".join(dict.fromkeys(r["notes"]))
        if len(r["cpu"]) > 1:
            notes = (
                (notes + "; " if notes else "")
                + "runs µs/token: "
                + "/".join(f"{c / args.tokens * 1e6:.1f}" for c in r["cpu"])
            )
        print(
            f"| {name} | {_fmt(u, '.2f')} | {_fmt(tps, ',.0f')} | {fc} | {x_floor} | {d_openai} | {f_openai} | {notes} |"
        )
    print()
    print(
        f"(total {time.monotonic() - t_start:.0f}s; floor = httpx.AsyncClient.stream + aiter_lines + stdlib json.loads; "
        "'CPU ÷ openai' > 1 means cheaper than the openai SDK)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows, "us_per_token": us, "first_call_ms": first}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
