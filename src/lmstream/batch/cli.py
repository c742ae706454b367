"""`lmstream batch INPUT.jsonl -o OUTPUT.jsonl`: many prompts, progress, resume, spend."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .._cli_options import JSON_OBJECT_SCHEMA, ModelOption, add_options, build_invoker, literal_template
from ..budget import Budget
from ..errors import ConfigurationError, LMStreamError
from ..processor import LMRequestProcessor
from .progress import format_spend, make_progress
from .requests import BatchRequest, read_requests
from .results import BatchResult, OutputFile, Resume
from .runner import BatchStats, run_batch

#: this command's own model options, after the shared ones
BATCH_OPTIONS: tuple[ModelOption, ...] = (
    ModelOption(("--temperature",), "sampling temperature, 0 to 2", type=float, hyper="temperature"),
)

EPILOG = """\
input, one request per line (JSONL), or a CSV with a 'prompt' column (and optionally 'id'):
  {"id": "q1", "prompt": "What should I do in Tokyo?"}
  {"id": "q2", "prompt_kwargs": {...}, "history": [...], "hyperparameters": {"temperature": 0}}
output, one JSON line per request, in the order they finish:
  {"id", "text" (or "value" with --json), "usage" (tokens, cost in USD), "finish_reason",
   "duration", "time_to_first_token", "error": {"type", "message"} when it failed}

Run the same command again to resume: ids already in OUTPUT are skipped (failed ones too,
unless --retry-failed). Ctrl-C stops at once and leaves OUTPUT valid.

exit codes: 0 every request answered, 1 some failed (or the budget ran out), 2 bad input or
configuration, 130 interrupted.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmstream batch",
        description="Answer every request of a JSONL (or CSV) file, a bounded number at a time, "
        "with progress on standard error; resumable.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="requests: .jsonl (one JSON object per line), .csv, or - for JSONL on stdin")
    p.add_argument("-o", "--output", required=True, help="results (.jsonl); appended to, so a re-run resumes")
    add_options(p, BATCH_OPTIONS)
    p.add_argument("--json", action="store_true", help="parse each answer as JSON (output key 'value')")
    p.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=None,
        help="requests at once: remote default 16, halved on 429 and grown back; the embedded model "
        "runs as many as its engine has sequences",
    )
    p.add_argument("--retry-failed", action="store_true", help="on resume, run the failed requests again")
    p.add_argument(
        "--cache",
        nargs="?",
        const="",
        default=None,
        metavar="DIR|URL",
        help="keep every answer and reuse it: a re-run of the same requests costs nothing; in DIR, a Redis URL, "
        "or (bare --cache) ~/.cache/lmstream/responses",
    )
    p.add_argument(
        "--cache-ttl", type=float, default=30 * 86400.0, metavar="S", help="seconds a cached answer is kept (30 days)"
    )
    p.add_argument("--budget", type=float, default=None, help="stop starting requests once this many USD are spent")
    p.add_argument(
        "--provider-batch",
        action="store_true",
        help="send the whole job through the provider's batch API (OpenAI Batch API, Anthropic Message "
        "Batches): cheaper, answered within 24 h; polls with progress",
    )
    p.add_argument("--poll-every", type=float, default=30.0, help="seconds between polls with --provider-batch")
    p.add_argument("--progress-every", type=float, default=5.0, help="seconds between plain progress lines")
    return p


def build_processor(args: argparse.Namespace) -> LMRequestProcessor[Any]:
    from ..parsers import JSONOutputParser
    from ..prompt import PromptBuilder

    invoker = build_invoker(args, BATCH_OPTIONS)
    if args.json and invoker.model_id.startswith("local/"):
        invoker.set_response_schema(JSON_OBJECT_SCHEMA)
    parser = JSONOutputParser() if args.json else None
    builder = PromptBuilder(system_template=literal_template(args.system), user_template="{prompt}")
    lmrp = LMRequestProcessor(builder, invoker, parser)
    if getattr(args, "cache", None) is not None:
        from ..cache import ResponseCache, default_directory

        where = args.cache
        redis = where.startswith(("redis://", "rediss://", "unix://"))
        store: Any = where if redis else Path(where or default_directory())
        # asked for by name: every answer is kept, sampled or not (a re-run is to cost nothing)
        lmrp.cache, lmrp.cache_sampled = ResponseCache(store, ttl=args.cache_ttl), True
    return lmrp


def _todo(requests: list[BatchRequest], resume: Resume) -> list[BatchRequest]:
    return [r for r in requests if r.id not in resume.done and r.id not in resume.failed]


async def _run(args: argparse.Namespace, stats: BatchStats, out: OutputFile, todo: list[BatchRequest]) -> None:
    lmrp = build_processor(args)
    progress = make_progress(stats, sys.stderr, args.progress_every)

    def on_result(result: BatchResult) -> None:
        out.write(result)
        progress.update()

    progress.start()
    try:
        if args.provider_batch:
            from .provider import run_provider_batch

            await run_provider_batch(
                lmrp,
                todo,
                on_result=on_result,
                stats=stats,
                state_path=provider_state(args.output),
                poll_every=args.poll_every,
                on_poll=progress.update,
                say=lambda line: print(f"lmstream batch: {line}", file=sys.stderr),
            )
        else:
            budget = Budget(args.budget) if args.budget is not None else None
            await run_batch(lmrp, todo, concurrency=args.concurrency, on_result=on_result, budget=budget, stats=stats)
    finally:
        progress.stop()
        await lmrp.lm_invoker.aclose()


def provider_state(output: str) -> Path:
    """Where `--provider-batch` keeps the id of the job it submitted (so a re-run collects it)."""
    out = Path(output)
    return out.with_name(out.name + ".provider-batch.json")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.provider_batch and args.budget is not None:
        print("lmstream batch: error: --budget applies to the streamed batch, not --provider-batch", file=sys.stderr)
        return 2
    resume_cmd = "lmstream batch " + shlex.join(argv)
    if args.input != "-" and _same_file(args.input, args.output):
        print(
            f"lmstream batch: error: -o {args.output} is the input file; the results go to another file (nothing "
            "was changed)",
            file=sys.stderr,
        )
        return 2
    out = OutputFile(args.output)
    try:
        requests = read_requests(args.input)
        resume = out.open(retry_failed=args.retry_failed)
    except (ConfigurationError, OSError) as exc:
        print(f"lmstream batch: error: {exc}", file=sys.stderr)
        return 2
    todo = _todo(requests, resume)
    stats = BatchStats(total=len(requests), skipped=len(requests) - len(todo))
    if resume.done or resume.failed or resume.dropped:
        curable = len(resume.failed) - len(resume.unfixable)
        kept = f", {len(resume.failed)} failed kept" if resume.failed else ""
        if curable:
            which = "them" if not resume.unfixable else f"the {curable} retryable"
            kept += f" (add --retry-failed to run {which} again)"
        print(
            f"lmstream batch: resuming {args.output}: {len(resume.done)} already answered{kept}, {len(todo)} to go",
            file=sys.stderr,
        )
    try:
        asyncio.run(_run(args, stats, out, todo))
    except KeyboardInterrupt:
        out.close()
        if args.provider_batch and provider_state(args.output).exists():
            print("\nlmstream batch: the provider batch keeps running on the provider's side", file=sys.stderr)
        print(
            f"\nlmstream batch: interrupted: {stats.done + len(resume.done)} of {len(requests)} answered, "
            f"output {args.output} is valid; resume with:\n  {resume_cmd}",
            file=sys.stderr,
        )
        return 130
    except ConfigurationError as exc:
        out.close()
        print(f"lmstream batch: error: {exc}", file=sys.stderr)
        return 2
    except LMStreamError as exc:
        out.close()
        print(f"lmstream batch: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out.close()
    print(_summary(stats), file=sys.stderr)
    if stats.stopped is not None:
        why = f"{stats.stopped} ({stats.not_sent} not sent)"
        print(f"lmstream batch: {why}; resume with:\n  {resume_cmd}", file=sys.stderr)
        return 1
    if stats.failed:
        unfixable = stats.failed - stats.retryable_failed
        if unfixable:
            print(
                f"lmstream batch: {unfixable} failed with errors a retry cannot cure (bad input, a refused key, "
                "a prompt too long): see their \"error\" in the output, fix them, then re-run",
                file=sys.stderr,
            )
        if stats.retryable_failed:
            again = resume_cmd if args.retry_failed else f"{resume_cmd} --retry-failed"
            print(f"lmstream batch: to run the failed ones again:\n  {again}", file=sys.stderr)
        return 1
    return 0


def _summary(stats: BatchStats) -> str:
    return (
        f"lmstream batch: {stats.done} answered, {stats.failed} failed"
        + (f", {stats.skipped} already done" if stats.skipped else "")
        + f" in {stats.elapsed:.1f}s; {stats.input_tokens} tokens in, {stats.output_tokens} out "
        f"({stats.tokens_per_s:.1f} tok/s); spend {format_spend(stats)}"
    )
