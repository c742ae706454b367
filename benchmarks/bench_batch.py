"""`lmstream batch` on 10,000 prompts: run, SIGINT half-way, resume; every id exactly once.

    python benchmarks/bench_batch.py                       # 10,000 prompts, --concurrency 64
    python benchmarks/bench_batch.py --prompts 2000 --concurrency 16 --storm 500

The provider is a Chat Completions replay (tests/wire, in this process's thread) answering each
`question N` with `answer N` (2 tokens, `--pace` seconds between its chunks), with a 429 storm on
requests `--storm` to 2x`--storm` by arrival. The batch runs as the command line, in its own
process, as a pipeline would; it is interrupted with SIGINT once half the output is written, then
run again with the same command. Printed: requests/s of each run, the server's counts, and
whether every id is in the output exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.wire.batch_apis import ChatReplay  # noqa: E402
from tests.wire.server import WireServer  # noqa: E402

KEY = "sk-bench-0123456789"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--pace", type=float, default=0.01, help="seconds between a response's chunks")
    ap.add_argument("--storm", type=int, default=2000, help="429 on arrivals storm..2*storm (0: none)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    inp, out = work / "in.jsonl", work / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": str(i), "prompt": f"question {i}"}) + "\n" for i in range(args.prompts)))
    replay = ChatReplay(storm=range(args.storm, 2 * args.storm), pace=args.pace)
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT / "src")}
    with WireServer(responder=replay) as srv:
        cmd = [
            sys.executable, "-c", "import sys; from lmstream.cli import main; sys.exit(main())", "batch",
            str(inp), "-o", str(out), "--model", "openai-chat/gpt-4o-mini", "--base-url", srv.base_url + "/v1",
            "--concurrency", str(args.concurrency), "--progress-every", "5",
        ]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and (not out.exists() or out.read_text().count("\n") < args.prompts // 2):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err1 = proc.communicate(timeout=60)
        t1 = time.monotonic()
        first = out.read_text().count("\n")
        sent1 = sum(replay.sent.values())
        replay.sent.clear()
        t2 = time.monotonic()
        second = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, timeout=3600)
        t3 = time.monotonic()
        sent2 = sum(replay.sent.values())
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    exact = sorted(ids, key=int) == [str(i) for i in range(args.prompts)]
    print(f"\n{args.prompts} prompts, concurrency {args.concurrency}, 429 storm of {replay.rate_limited}:\n")
    print("| run | exit | lines written | requests sent | wall (s) | answers/s |\n|---|---:|---:|---:|---:|---:|")
    print(
        f"| first, SIGINT at half | {proc.returncode} | {first} | {sent1} | {t1 - t0:.1f} | {first / (t1 - t0):.0f} |"
    )
    done2 = len(ids) - first
    print(f"| resume | {second.returncode} | {done2} | {sent2} | {t3 - t2:.1f} | {done2 / (t3 - t2):.0f} |")
    print(f"\nevery id exactly once: {exact} ({len(ids)} lines, {len(set(ids))} distinct)")
    print("last lines of the resumed run's stderr:\n  " + "\n  ".join(second.stderr.strip().splitlines()[-2:]))
    assert "resume with" in err1


if __name__ == "__main__":
    main()
