"""`lmstream worker --redis URL [--model ID] [--base-url URL]`: run queued requests on this machine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from .._cli_hints import cli_message
from .._cli_options import add_options, build_processor
from ..cache import JOB_KEY, ResponseCache, set_request_context
from ..errors import ConfigurationError, LMStreamError
from ..events import EventEmitter
from ..processor import LMRequestProcessor
from ..protocols.chat import chat_turn, deferred_to, run_chat_turn
from ..protocols.files import BlobStore, blob_refs, fetch_blobs
from ..protocols.openai_turn import JOB_KIND, openai_job
from ..protocols.requests import PromptSlot, parse_chat
from ..protocols.ui_approvals import ApprovalStore
from .connection import redact_url
from .keys import Keys
from .options import DEFAULT_OPTIONS, RedisOptions
from .queue import Handle

EPILOG = """\
Web nodes started with `lmstream serve --redis URL --queue` put requests on the Redis stream
{queue}; every worker reads it through the consumer group "workers", so each request runs
on exactly one worker. A worker that dies mid-answer is noticed within its lease: the chat's
stream ends with an error event (the request is not re-run, which would repeat tokens).

examples:
  lmstream worker --redis redis://127.0.0.1:6379/0
  lmstream worker --redis redis://10.0.0.5:6379/0 --model openai/gpt-4.1-nano --concurrency 64
  lmstream worker --redis redis://127.0.0.1:6379/0 --model openai-compatible/any --base-url http://127.0.0.1:8080/v1
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmstream worker",
        description="Run model requests queued on Redis by `lmstream serve --redis URL --queue`.",
        epilog=EPILOG.format(queue=Keys().queue),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--redis", required=True, metavar="URL", help="Redis URL, e.g. redis://127.0.0.1:6379/0")
    add_options(p)
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests run at once (default 4; for the local model its --parallel, 8 unless set)",
    )
    p.add_argument(
        "--lease", type=float, default=DEFAULT_OPTIONS.lease, help="seconds before a silent worker counts as dead"
    )
    p.add_argument(
        "--prefix", default=DEFAULT_OPTIONS.prefix, help=f"Redis key prefix (default {DEFAULT_OPTIONS.prefix})"
    )
    p.add_argument("--name", default=None, help="consumer name in the group (default host:pid)")
    p.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="SPEC",
        help="tools from an MCP server, as for `lmstream serve --mcp` (give workers the same as the web nodes)",
    )
    p.add_argument("--approve-tools", default="", metavar="NAMES", help="comma-separated tools a person must approve")
    p.add_argument("--approve-all-tools", action="store_true", help="every tool call waits for a person's approval")
    cache = p.add_argument_group("response cache, as for `lmstream serve` (see docs/cache.md)")
    cache.add_argument("--cache", choices=("off", "memory", "redis"), default="off", help="default off")
    cache.add_argument("--cache-ttl", type=float, default=3600.0, metavar="S", help="seconds an answer is served")
    cache.add_argument("--cache-pacing", default="instant", metavar="P", help="instant, recorded[:F] or tokens/s")
    cache.add_argument("--cache-max-bytes", type=int, default=64 * 1024 * 1024, metavar="N", help="memory store bound")
    cache.add_argument("--cache-sampled", action="store_true", help="also cache requests that sample")
    return p


#: seconds a queued chat's tool call waits for a person (as `lmstream serve --approval-ttl`'s default)
APPROVAL_TTL = 600.0


def chat_jobs(processor: LMRequestProcessor[Any], approvals: ApprovalStore, blobs: BlobStore | None = None) -> Handle:
    """How a worker runs what `lmstream serve --queue` enqueued: the `/api/chat` body (or an
    OpenAI-compatible request's), parsed and run as the server runs it (its hyperparameters
    already passed the node's policy). A tool call that needs approval ends the answer and is
    saved in `approvals` (a `RedisApprovalStore`) for a web node to continue."""
    slot = PromptSlot.of(processor.prompt_builder)

    def handle(job: dict[str, Any], emitter: EventEmitter) -> Any:
        scope = job["chat"].get(JOB_KEY)  # the tenant and no-cache the web node saw (never the client's)
        if isinstance(scope, dict) and processor.cache is not None:
            return _in_cache_context(scope, lambda: dispatch(job, emitter))
        return dispatch(job, emitter)

    def dispatch(job: dict[str, Any], emitter: EventEmitter) -> Any:
        if job["chat"].get("kind") == JOB_KIND:  # POST /v1/chat/completions or /v1/responses
            return openai_job(processor, {**job["chat"], "max_messages": job.get("max_messages", 500)}, emitter)
        refs = blob_refs(job["chat"])
        if refs and blobs is not None:  # files travel as references: read them from the store first
            return _with_files(job, refs, blobs, emitter)
        return run(job, {}, emitter)

    def run(job: dict[str, Any], found: dict[str, bytes], emitter: EventEmitter) -> Any:
        req = parse_chat(job["chat"], int(job.get("max_messages", 500)), blobs=found)
        turn = chat_turn(processor, req, slot)
        return run_chat_turn(processor, turn, deferred_to(approvals, turn.chat_id, APPROVAL_TTL), emitter)

    async def _with_files(job: dict[str, Any], refs: list[str], store: BlobStore, emitter: EventEmitter) -> Any:
        return await run(job, await fetch_blobs(store, refs), emitter)

    return handle


async def _in_cache_context(scope: dict[str, Any], start: Callable[[], Any]) -> Any:
    """Start the job inside the tenant and bypass the web node saw, so the worker's cache keys
    and bypasses it as that node would have."""
    tenant = scope.get("tenant")
    set_request_context(tenant if isinstance(tenant, str) else None, bool(scope.get("bypass")))
    return await start()


def response_cache(args: argparse.Namespace) -> Any:
    """`--cache memory|redis` (redis: the worker's --redis) as a `ResponseCache`, or None."""
    if getattr(args, "cache", "off") == "off":
        return None
    store = args.redis if args.cache == "redis" else "memory"
    return ResponseCache(store, ttl=args.cache_ttl, pacing=args.cache_pacing, max_bytes=args.cache_max_bytes)


def job_handler(processor: Any, chat: Handle | None = None) -> Handle:
    """`handle(job, emitter)` for `Worker`. A job is what a web node enqueued, {"chat": the POST
    /api/chat body, "max_messages"}, run by `chat` (see `chat_jobs`), or, for library use,
    {"prompt", "history", "hyperparameters"} (the prompt is the user message)."""

    def handle(job: dict[str, Any], emitter: EventEmitter) -> Any:
        if "chat" in job:
            if chat is None:
                raise ConfigurationError("this worker runs no /api/chat jobs: start it as `lmstream worker`")
            return chat(job, emitter)
        return processor.process(
            prompt_kwargs={},
            extra_contents=[str(job.get("prompt", ""))],
            history=job.get("history") or None,
            hyperparameters=job.get("hyperparameters") or None,
            event_emitter=emitter,
        )

    return handle


def default_concurrency(invoker: Any) -> int:
    """Jobs taken at once: as many as the embedded engine generates at once, else 4."""
    from ..invokers.local import LocalLMInvoker

    return invoker.parallel if isinstance(invoker, LocalLMInvoker) else 4


#: `tools(processor, specs, approve, approve_all)` -> a lifespan giving the processor MCP tools
ToolsLifespan = Callable[..., Callable[[Any], contextlib.AbstractAsyncContextManager[None]]]


async def serve(args: argparse.Namespace, tools: Callable[[], ToolsLifespan] | None = None) -> int:
    from .approvals import RedisApprovalStore
    from .blobs import RedisBlobStore
    from .connection import connect
    from .queue import Worker

    # built as `lmstream serve` builds its processor, so a queued chat runs as it would on the node
    processor = build_processor(args)
    processor.cache, processor.cache_sampled = response_cache(args), args.cache_sampled
    invoker = processor.lm_invoker
    redis = connect(args.redis)
    options = RedisOptions(prefix=args.prefix, lease=args.lease)
    approvals = RedisApprovalStore(redis, prefix=args.prefix)
    blobs = RedisBlobStore(redis, args.prefix, options.ttl)
    worker = Worker(
        redis,
        job_handler(processor, chat_jobs(processor, approvals, blobs)),
        options=options,
        name=args.name,
        concurrency=args.concurrency or default_concurrency(invoker),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, worker.stop)
    print(
        f"lmstream worker {worker.name}: model {args.model}, queue {options.keys.queue} on {redact_url(args.redis)}",
        file=sys.stderr,
        flush=True,
    )
    approve = [n.strip() for n in args.approve_tools.split(",") if n.strip()]
    try:
        if args.mcp or approve or args.approve_all_tools:
            if tools is None:
                raise ConfigurationError("this worker cannot open MCP tools: start it as `lmstream worker`")
            async with tools()(processor, args.mcp, approve, args.approve_all_tools)(None):
                await worker.run()
        else:
            await worker.run()
    finally:
        await redis.aclose()
        with contextlib.suppress(Exception):
            await invoker.aclose()
    return 0


def main(argv: list[str] | None = None, tools: Callable[[], ToolsLifespan] | None = None) -> int:
    """`lmstream worker ...`: runs the jobs of `lmstream serve --queue` (see `chat_jobs`); `tools`
    gives the factory of `--mcp` tool lifespans (the command line wires the server's)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(args, tools))
    except ConfigurationError as exc:
        print(f"lmstream worker: error: {cli_message(exc, args.model, key_option=False)}", file=sys.stderr)
        return 2
    except LMStreamError as exc:
        print(f"lmstream worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
