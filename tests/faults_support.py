"""What the fault tests share: a fast retry policy, the SDKs imported up front, fault scripts
and readers of a run's events."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import socket
import time
from typing import Any

from lmstream import (
    EventEmitter,
    RetryConfig,
    StreamInterruptedError,
)
from lmstream.events import EventLevel
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.providers import PROVIDERS
from tests.wire.server import WireServer

FAST = RetryConfig(max_retries=2, base_delay=0.01)

# Import the SDKs once up front so that timing assertions measure lmstream, not imports.
for _mod in ("openai", "anthropic", "google.genai", "boto3"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_mod)


# --------------------------------------------------------------------------- helpers


def _texts(name: str, chunks: list[bytes]) -> list[str]:
    """The text deltas a list of wire chunks carries, decoded per provider (garbage skipped)."""
    wire = PROVIDERS[name].wire
    if wire == "bedrock":
        return es.bedrock_texts(chunks)
    out: list[str] = []
    for chunk in chunks:
        for line in chunk.decode("utf-8", "replace").splitlines():
            if not line.startswith("data:"):
                continue
            try:
                d = json.loads(line[5:])
            except ValueError:
                continue
            if not isinstance(d, dict):
                continue
            if wire == "chat":
                for ch in d.get("choices") or []:
                    if (ch.get("delta") or {}).get("content"):
                        out.append(ch["delta"]["content"])
            elif wire == "responses":
                if d.get("type") == "response.output_text.delta":
                    out.append(d["delta"])
            elif wire == "anthropic":
                if d.get("type") == "content_block_delta" and d["delta"].get("type") == "text_delta":
                    out.append(d["delta"]["text"])
            else:
                for cand in d.get("candidates") or []:
                    for part in (cand.get("content") or {}).get("parts") or []:
                        if part.get("text"):
                            out.append(part["text"])
    return out


def _after(name: str, chunks: list[bytes], k: int) -> int:
    """Index just past the chunk carrying text delta number `k` (1-based)."""
    for i in range(len(chunks) + 1):
        if len(_texts(name, chunks[:i])) >= k:
            return i
    raise AssertionError(f"fixture has fewer than {k} text deltas")


async def _invoke(inv: Any, timeout: float = 5.0) -> tuple[list[Any], Any, float]:
    """Run one standalone request; return (events, result or exception, seconds)."""
    emitter = EventEmitter.with_stream_handler()
    if inv.provider == "bedrock":  # Bedrock loads botocore's service model once: not part of a timing
        await asyncio.to_thread(inv._get_client)
    t0 = time.perf_counter()
    task = asyncio.create_task(inv.invoke("hi", event_emitter=emitter))
    events: list[Any] = []
    async with asyncio.timeout(timeout):  # stream() must end by itself
        async for e in emitter.stream():
            events.append(e)
    try:
        result: Any = await asyncio.wait_for(task, timeout)
    except Exception as exc:  # the outcome is what we assert on
        result = exc
    await emitter.close()
    return events, result, time.perf_counter() - t0


def _response_text(events: list[Any]) -> str:
    return "".join(e.value for e in events if e.type == "response")


def _assert_interrupted(events: list[Any], exc: Any, sent: str, srv: WireServer) -> None:
    """The after-first-token contract."""
    assert isinstance(exc, StreamInterruptedError), repr(exc)
    assert events[-1].type == "error" and events[-1].level == EventLevel.ERROR
    assert events[-1].metadata["error_type"] == "StreamInterruptedError"
    assert [e.type for e in events].count("error") == 1 and "done" not in [e.type for e in events]
    emitted = _response_text(events)
    assert emitted, "the fault must come after the first token"
    assert exc.partial_output.text == emitted  # exactly the emitted events
    assert emitted == sent  # ... which is exactly what the server sent before the fault
    assert exc.partial_output.finish_reason == "error"
    assert len(srv.requests) == 1  # never retried after the first token


# =========================================================================== before the first token


class _ClosedPort:
    """A base_url nobody listens on (bound then released: connection refused)."""

    def __init__(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{s.getsockname()[1]}"
        s.close()


def _inband(name: str) -> list[bytes]:
    wire = PROVIDERS[name].wire
    if wire == "chat":
        return fx.openai_chat_midstream_error(("Part", "ial"))
    if wire == "responses":
        return fx.openai_responses_error(after_text=("Part", "ial"))
    if wire == "anthropic":
        return fx.anthropic_overloaded_stream(("Part", "ial"))
    if wire == "bedrock":  # `:message-type: exception` after two text deltas
        return [*es.bedrock_stream([("Part", "ial")], stop_reason=None)[:3], es.bedrock_exception()]
    # Gemini: an error object as the next SSE event (what Google's front end sends when the
    # backend fails mid-stream); the SDK raises APIError from it.
    err = {"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}
    return [*fx.gemini_text(("Part", "ial", "!"))[:-1], b"data: " + json.dumps(err).encode() + b"\r\n\r\n"]
