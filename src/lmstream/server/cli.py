"""`lmstream serve`: run `create_app` with uvicorn (embedded model by default).

This is the composition root of the server: the only module of `lmstream.server` that knows
Redis exists (`--redis` wires a `lmstream.redis.RedisChatRegistry` in as the chat registry).

Binding a non-loopback address without `--api-key` is refused (exit 2) unless `--insecure`:
anyone who reaches the port would spend the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import ipaddress
import os
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._mime import SUPPORTED

if TYPE_CHECKING:
    from ..chat_registry import ChatRegistry

from .._cli_options import add_options, build_processor

__all__ = ["main", "is_loopback"]

#: the most tokens a client may ask for when `--max-tokens` is not given
MAX_TOKENS = 4096

EPILOG = """\
examples:
  lmstream serve                                   # embedded model on http://127.0.0.1:8000/
  lmstream serve --model openai/gpt-4.1-nano       # needs OPENAI_API_KEY
  lmstream serve --model openai-compatible/any --base-url http://127.0.0.1:8080/v1
  lmstream serve --host 0.0.0.0 --api-key "$KEY"   # reachable from other machines: key required
  lmstream serve --mcp "stdio:python -m my_server" --approve-tools send_mail   # MCP tools, one approved
  lmstream serve --cors-origin http://localhost:3000   # a React app on another origin may call it

endpoints: GET / (chat page), POST /api/chat (Vercel AI SDK UI message stream v1),
POST /v1/stream (lmstream events as SSE), POST /api/chat/{id}/stop, GET /api/chat/{id}/stream,
GET /healthz, and the OpenAI-compatible POST /v1/chat/completions, POST /v1/responses,
GET /v1/models (any OpenAI client: base_url http://127.0.0.1:8000/v1). The key can also come
from LMSTREAM_API_KEY.
"""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the URL is printed: a taken port is said at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":  # restart at once after a stop (TIME_WAIT), as uvicorn does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: a small SSE write goes at once, not after the client's
        # delayed ACK (~40 ms on every request of a kept-alive connection but its first)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def port_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use (another server?); stop it or pass --port N"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); pass --port N"
    return str(exc)


def graceful_server(uvicorn: Any, config: Any, shut_down: Callable[[], None]) -> Any:
    """A uvicorn server on which Ctrl-C (or SIGTERM) ends every running answer with an error
    chunk saying the server is shutting down, then stops; a second Ctrl-C exits at once."""

    class Server(uvicorn.Server):  # type: ignore[misc]
        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit:  # the second signal: do not wait for anything
                os._exit(130)
            with contextlib.suppress(RuntimeError):  # a signal handler runs between the loop's steps
                asyncio.get_running_loop().call_soon_threadsafe(shut_down)
            super().handle_exit(sig, frame)

    return Server(config)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _redis_registry(url: str, queue: bool) -> ChatRegistry:
    """The one place where the server meets Redis: the registry it talks to, backed by Redis."""
    from ..redis import RedisChatRegistry, connect

    return RedisChatRegistry(connect(url), queue=queue, close_redis=True)


def _redis_blobs(registry: Any) -> Any:
    """Chat files in the registry's Redis, with the chats' TTL: workers and other nodes read them."""
    from ..redis.blobs import RedisBlobStore

    return RedisBlobStore(registry.redis, registry.options.prefix, registry.options.ttl)


def _file_limits(args: argparse.Namespace) -> Any:
    from ..protocols.files import FileLimits

    types = tuple(t.strip() for t in args.file_types.split(",") if t.strip())
    unknown = [t for t in types if t not in SUPPORTED]
    if unknown:
        choose = ", ".join(SUPPORTED)
        raise ValueError(f"--file-types: {', '.join(unknown)} not carried by lmstream (choose from {choose})")
    if min(args.max_file_bytes, args.max_request_file_bytes, args.max_files) < 1:
        raise ValueError("--max-file-bytes, --max-request-file-bytes and --max-files must be at least 1")
    return FileLimits(args.max_file_bytes, args.max_request_file_bytes, args.max_files, types)


def _redis_problem(url: str, timeout: float = 3.0) -> str | None:
    """Why Redis at `url` cannot be used now (None: it answers a PING), said on the operator's
    terminal at start: a server that retried forever would only answer 503s."""
    from .._redact import redact
    from ..redis import connect
    from ..redis.connection import redact_url

    async def ping() -> None:
        client = connect(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        reason = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {redact(str(exc))}"
        return f"cannot reach Redis at {redact_url(url)} ({reason}); start it, or fix --redis"
    return None


def _redis_approvals(registry: Any) -> Any:
    """Pending tool approvals in the registry's Redis: any node takes the answer."""
    from ..redis.approvals import RedisApprovalStore

    return RedisApprovalStore(registry.redis)


def _response_cache(args: argparse.Namespace) -> Any:
    """`--cache memory|redis` as the processor's `ResponseCache` (the Redis one shares --redis)."""
    from ..cache import ResponseCache

    store = args.redis if args.cache == "redis" else "memory"
    return ResponseCache(store, ttl=args.cache_ttl, pacing=args.cache_pacing, max_bytes=args.cache_max_bytes)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmstream serve",
        description="Serve a model over HTTP: a chat page, the Vercel AI SDK's UI message stream, and lmstream's SSE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, declared=("--max-tokens",))  # declared below: also the ceiling a client may ask for
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        help="require 'Authorization: Bearer KEY' (or set LMSTREAM_API_KEY); repeatable: each key is a tenant, "
        "whose cached answers no other key sees",
    )
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    p.add_argument(
        "--redis", default=None, metavar="URL", help="keep answers in Redis: any node resumes or stops any chat"
    )
    p.add_argument("--queue", action="store_true", help="with --redis: run answers on `lmstream worker` processes")
    p.add_argument(
        "--max-file-bytes",
        type=int,
        default=10 * 1024 * 1024,
        metavar="N",
        help="largest file a client may attach, in bytes (default 10 MiB; larger: 413)",
    )
    p.add_argument(
        "--max-request-file-bytes",
        type=int,
        default=25 * 1024 * 1024,
        metavar="N",
        help="most bytes of new files in one request (default 25 MiB; more: 413)",
    )
    p.add_argument("--max-files", type=int, default=10, metavar="N", help="most new files in one request (default 10)")
    p.add_argument(
        "--file-types",
        default=",".join(SUPPORTED),
        metavar="TYPES",
        help="comma-separated MIME types clients may attach, checked from the bytes (others: 415); "
        f"default all lmstream carries: {', '.join(SUPPORTED)}",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web apps on ORIGIN (e.g. http://localhost:3000) call the API from the browser; repeatable",
    )
    p.add_argument(
        "--mcp",
        action="append",
        default=[],
        metavar="SPEC",
        help="tools from an MCP server: 'stdio:COMMAND ARGS' or http://HOST:PORT/mcp (repeatable)",
    )
    limits = p.add_argument_group("limits (see docs/deploying.md)")
    limits.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a Host name the server answers to besides the loopback names (repeatable; '*' for any)",
    )
    limits.add_argument(
        "--max-concurrent", type=_positive_int, default=256, metavar="N", help="answers at once (default 256)"
    )
    limits.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"tokens per answer, and the most a client may ask for (default: clients may ask up to {MAX_TOKENS})",
    )
    limits.add_argument(
        "--read-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds a client has to send its headers and body (default 10; then 408)",
    )
    limits.add_argument(
        "--keepalive",
        type=_seconds,
        default=15.0,
        metavar="S",
        help="send an SSE comment (': keep-alive') after S seconds without data, e.g. while the model "
        "has not sent its first token, so proxies keep the stream open (default 15)",
    )
    limits.add_argument(
        "--write-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds a client may take to read what was sent (default 30; then it is cut off and its slot freed)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="seconds of upstream silence before an answer fails (default 60)",
    )
    cache = p.add_argument_group("response cache (see docs/cache.md)")
    cache.add_argument(
        "--cache",
        choices=("off", "memory", "redis"),
        default="off",
        help="answer repeated questions from a cache and join identical ones in flight: in this process "
        "(memory) or shared by every node (redis, needs --redis URL); default off",
    )
    cache.add_argument(
        "--cache-ttl", type=_seconds, default=3600.0, metavar="S", help="seconds an answer is served (default 3600)"
    )
    cache.add_argument(
        "--cache-pacing",
        default="instant",
        metavar="P",
        help="how a cached answer is replayed: instant (default), recorded (the original gaps), "
        "recorded:0.5 (half of them), or tokens per second (e.g. 40)",
    )
    cache.add_argument(
        "--cache-max-bytes",
        type=_positive_int,
        default=64 * 1024 * 1024,
        metavar="N",
        help="with --cache memory: bytes of answers kept, least recently used dropped first (default 64 MiB)",
    )
    cache.add_argument(
        "--cache-sampled",
        action="store_true",
        help="also cache requests that sample (by default only temperature 0 or a fixed seed)",
    )
    api = p.add_argument_group("OpenAI-compatible API (POST /v1/chat/completions, POST /v1/responses, GET /v1/models)")
    api.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients may send as `model` (repeatable; default: the --model id); others get 404",
    )
    api.add_argument(
        "--allow-client-tools",
        action="store_true",
        help="let clients send `tools` (they run them; the model's calls come back as tool_calls)",
    )
    p.add_argument("--approve-tools", default="", metavar="NAMES", help="comma-separated tools a person must approve")
    p.add_argument("--approve-all-tools", action="store_true", help="every tool call waits for a person's approval")
    p.add_argument(
        "--approval-ttl",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a tool call waits for approval before it counts as denied (default 600)",
    )
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    keys = [k for k in (args.api_key or []) if k] or [k for k in [os.environ.get("LMSTREAM_API_KEY")] if k]
    api_key = keys or None
    if not is_loopback(args.host) and api_key is None and not args.insecure:
        print(
            f"lmstream serve: refusing to bind {args.host} without an API key: anyone who reaches it could use "
            "the model. Pass --api-key KEY (or LMSTREAM_API_KEY), bind 127.0.0.1, or add --insecure.",
            file=sys.stderr,
        )
        return 2
    try:
        import uvicorn

        from . import create_app
    except ImportError as exc:
        print(f"lmstream serve: needs the server extra: pip install 'lmstream[server]' ({exc})", file=sys.stderr)
        return 2
    from .._cli_hints import cli_message
    from ..errors import ConfigurationError

    try:
        processor = build_processor(args)
    except ConfigurationError as exc:
        print(f"lmstream serve: error: {cli_message(exc, args.model, key_option=False)}", file=sys.stderr)
        return 2
    if args.queue and not args.redis:
        print("lmstream serve: --queue needs --redis URL", file=sys.stderr)
        return 2
    if args.queue and (args.mcp or args.approve_tools or args.approve_all_tools):
        print(
            "lmstream serve: note: with --queue the workers run the answers: start them with the same "
            "--mcp/--approve-tools/--approve-all-tools (this node runs the tools a person approved)",
            file=sys.stderr,
        )
    if args.redis and (problem := _redis_problem(args.redis)) is not None:
        print(f"lmstream serve: {problem}", file=sys.stderr)
        return 2
    if args.cache == "redis" and not args.redis:
        print("lmstream serve: --cache redis needs --redis URL (or use --cache memory)", file=sys.stderr)
        return 2
    if args.cache != "off":
        try:
            processor.cache = _response_cache(args)
        except ConfigurationError as exc:
            print(f"lmstream serve: error: {exc}", file=sys.stderr)
            return 2
        processor.cache_sampled = args.cache_sampled
    try:  # before the model loads and before any URL is printed: a taken port is said at once
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"lmstream serve: cannot listen on {args.host} port {args.port}: {port_problem(exc)}", file=sys.stderr)
        return 2
    try:
        return _run(uvicorn, create_app, args, processor, api_key, sock)
    finally:
        sock.close()


def _run(uvicorn: Any, create_app: Any, args: argparse.Namespace, processor: Any, api_key: Any, sock: Any) -> int:
    """Load, build the app and serve on `sock` (bound, so its port is known to be free)."""
    from ..errors import ConfigurationError
    from .serving import uvicorn_config

    load = getattr(processor.lm_invoker, "load", None)
    if callable(load) and not args.queue:  # the embedded model (not needed when workers run answers)
        print(f"lmstream serve: loading {args.model} ...", file=sys.stderr, flush=True)
        load()
    approve = [n.strip() for n in args.approve_tools.split(",") if n.strip()]
    lifespan = None
    if args.mcp or approve or args.approve_all_tools:
        from .mcp_tools import mcp_lifespan

        try:
            lifespan = mcp_lifespan(processor, args.mcp, approve, args.approve_all_tools)
        except ConfigurationError as exc:
            print(f"lmstream serve: error: {exc}", file=sys.stderr)
            return 2
    registry = _redis_registry(args.redis, args.queue) if args.redis else None
    approvals = _redis_approvals(registry) if registry is not None else None
    try:
        limits = _file_limits(args)
    except ValueError as exc:
        print(f"lmstream serve: error: {exc}", file=sys.stderr)
        return 2
    app = create_app(
        processor,
        api_key=api_key,
        registry=registry,
        approvals=approvals,
        approval_ttl=args.approval_ttl,
        allowed_hosts=[*_bound_host(args.host), *args.allowed_host],
        max_concurrent=args.max_concurrent,
        max_tokens=args.max_tokens or MAX_TOKENS,
        read_timeout=args.read_timeout,
        idle_timeout=args.idle_timeout,
        heartbeat=args.keepalive,
        cors_origins=args.cors_origin,
        served_model_names=args.served_model_name or [args.model],
        allow_client_tools=args.allow_client_tools,
        file_limits=limits,
        blobs=_redis_blobs(registry) if registry is not None else None,
        write_timeout=args.write_timeout,
        lifespan=lifespan,
    )
    # Start-up objects (modules, the model's wrappers) never die: keep them out of the collector's
    # full passes, which otherwise stall every stream once thousands are open.
    gc.collect()
    gc.freeze()
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(f"lmstream serve: {args.model} on http://{where}:{args.port}/", file=sys.stderr, flush=True)
    config = uvicorn_config(
        app,
        host=args.host,
        port=args.port,
        read_timeout=args.read_timeout,
        # streams, plus room for resumes, stops and health checks; past it uvicorn answers 503
        max_connections=2 * args.max_concurrent + 64,
        log_level="warning",
        timeout_graceful_shutdown=1,  # running answers end at the first Ctrl-C: nothing to wait for
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises the captured Ctrl-C again once stopped
        graceful_server(uvicorn, config, app.state.lmstream.shut_down).run(sockets=[sock])
    return 0


def _bound_host(host: str) -> list[str]:
    """The address `--host` names is a Host the server answers to (not a wildcard address)."""
    return [] if host in ("0.0.0.0", "::", "") else [host]
