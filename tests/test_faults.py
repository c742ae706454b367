"""Every fault, every provider path: the real SDK / HTTP client against a loopback server.

The four providers of tests/test_providers.py are driven through their real client path
(official SDK, or lmstream's own HTTP for Chat Completions) while tests/wire/server.py injects
the fault. The contract under test is the README's "Failure behaviour":

* before the first token: 429 / 408 / 409 / 5xx / connection errors are retried (Retry-After
  honoured), other 4xx are not; `RetryConfig.timeout` bounds the whole thing;
* after the first token: never retried; an `error` event (level ERROR) is the last event,
  `stream()` ends, the task raises `StreamInterruptedError` whose `.partial_output.text` is
  exactly the text of the `response` events emitted, i.e. what the server sent before the fault;
* a stream that ends without the provider's end marker is a dropped stream, not a short answer;
* cancelling `process()` closes the connection at once; secrets never leak; a slow consumer
  never blocks the request.

Every test here is bounded by short explicit timeouts; the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from typing import Any

import pytest

from lmstream import (
    EventEmitter,
    LMRequestProcessor,
    LMTimeoutError,
    PromptBuilder,
    ProviderError,
    RateLimitError,
    RetryConfig,
    StreamInterruptedError,
)
from lmstream.events import BaseEventHandler, EventLevel, StreamEventHandler
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.providers import FAULT_NAMES as NAMES
from tests.wire.providers import KEY, PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

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


@pytest.mark.parametrize("name", NAMES)
async def test_5xx_then_success_is_retried(name):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(status=500, body=p.error(500)), Script(chunks=p.text(TEXT)))
        events, out, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert len(srv.requests) == 2
    assert out.text == "".join(TEXT) and events[-1].type == "done"
    assert _response_text(events) == "".join(TEXT)  # the failed attempt emitted nothing


@pytest.mark.parametrize("name", NAMES)
async def test_429_retry_after_is_honoured(name):
    """Retry-After: 0.3 with base_delay=0.01: the gap between the two requests proves it."""
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(status=429, headers={"Retry-After": "0.3"}, body=p.error(429)), Script(chunks=p.text(TEXT)))
        task = asyncio.create_task(_invoke(_invoker(p, srv, retry_config=FAST)))
        assert await srv.wait_for(lambda s: len(s.requests) >= 1, 5)
        t1 = time.monotonic()
        assert await srv.wait_for(lambda s: len(s.requests) >= 2, 5)
        gap = time.monotonic() - t1
        _events, out, _ = await task
    assert 0.27 <= gap < 1.5, gap  # polling granularity is 20 ms; backoff alone would be ~0.01 s
    assert out.text == "".join(TEXT)


@pytest.mark.parametrize("status", [400, 401, 404])
@pytest.mark.parametrize("name", NAMES)
async def test_4xx_is_not_retried(name, status):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(status=status, body=p.error(status)), Script(chunks=p.text(TEXT)))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert len(srv.requests) == 1
    assert isinstance(err, ProviderError) and not isinstance(err, RateLimitError)
    assert err.status_code == status and not err.retryable
    assert events[-1].type == "error" and events[-1].metadata["status_code"] == status
    if status == 401:
        assert "check the API key" in str(err)


@pytest.mark.parametrize("status", [408, 409])
@pytest.mark.parametrize("name", NAMES)
async def test_408_409_are_retried(name, status):
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(status=status, body=p.error(status)), Script(chunks=p.text(TEXT)))
        _, out, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert len(srv.requests) == 2
    assert out.text == "".join(TEXT)


class _ClosedPort:
    """A base_url nobody listens on (bound then released: connection refused)."""

    def __init__(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{s.getsockname()[1]}"
        s.close()


@pytest.mark.parametrize("name", NAMES)
async def test_connection_refused_is_retried_then_provider_error(name, caplog):
    p = PROVIDERS[name]
    caplog.set_level(logging.INFO, logger="lmstream")
    cfg = RetryConfig(max_retries=2, base_delay=0.1, jitter=False)  # backoff 0.1 + 0.2 s
    events, err, elapsed = await _invoke(_invoker(p, _ClosedPort(), retry_config=cfg))
    assert isinstance(err, ProviderError) and err.status_code is None and err.retryable
    retries = [r for r in caplog.records if r.name == "lmstream" and "retry" in r.getMessage()]
    assert [r.getMessage().split("retry ")[1].split(" ")[0] for r in retries] == ["1/2", "2/2"]
    assert 0.29 <= elapsed < 3.0, elapsed  # both backoffs slept; no SDK-level retries on top
    assert events[-1].type == "error"


@pytest.mark.parametrize("name", NAMES)
async def test_total_timeout_bounds_retries(name):
    """500 forever with Retry-After 0.2; RetryConfig(timeout=0.5) ends it all within ~1 s."""
    p = PROVIDERS[name]
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(status=500, headers={"Retry-After": "0.2"}, body=p.error(500)))
        events, err, elapsed = await _invoke(_invoker(p, srv, retry_config=RetryConfig(timeout=0.5)))
        n = len(srv.requests)
    assert isinstance(err, LMTimeoutError) and "RetryConfig.timeout" in str(err)
    assert 0.45 <= elapsed < 1.0, elapsed
    assert n >= 2  # it was retrying, Retry-After honoured
    assert events[-1].type == "error" and events[-1].metadata["error_type"] == "LMTimeoutError"


@pytest.mark.parametrize("kind", ["json", "html"])
@pytest.mark.parametrize("name", NAMES)
async def test_200_with_a_document_instead_of_a_stream_quotes_the_server(name, kind):
    """An overloaded server or a gateway answers 200 with a JSON or HTML page: a ProviderError
    naming the provider and quoting the page, at once; not retried as a dropped stream."""
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script.document(kind, "The model is overloaded"), Script(chunks=p.text(TEXT)))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        n = len(srv.requests)
    assert isinstance(err, ProviderError) and not isinstance(err, StreamInterruptedError), repr(err)
    assert err.provider == p.model_id.split("/")[0] and err.status_code == 200 and not err.retryable
    assert "The model is overloaded" in str(err) and str(err).startswith(f"{p.model_id.split('/')[0]} HTTP 200")
    assert "end marker" not in str(err) and "<" not in str(err)
    assert n == 1  # not retried
    assert [e.type for e in events] == ["error"] and "The model is overloaded" in events[0].value


# =========================================================================== after the first token


@pytest.mark.parametrize("name", NAMES)
async def test_dropped_connection_mid_stream(name):
    """FIN without the final chunk after 3 text deltas."""
    p = PROVIDERS[name]
    chunks = p.text(TEXT)
    n = _after(name, chunks, 3)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, drop_after=n))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert srv.requests[0].outcome == "dropped" and srv.requests[0].chunks_written == n
        _assert_interrupted(events, err, "".join(_texts(name, chunks[:n])), srv)
    assert err.partial_output.text == "".join(TEXT[:3])


@pytest.mark.parametrize("name", NAMES)
async def test_reset_connection_mid_stream(name):
    """TCP RST after 3 text deltas. An RST may discard bytes still in flight, so the pause
    between chunks makes sure what came before the last chunk was read; the partial output is
    what was emitted, and a prefix of what was sent."""
    p = PROVIDERS[name]
    chunks = p.text(TEXT)
    n = _after(name, chunks, 3)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, drop_after=n, reset=True, delay_between=0.03))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        sent = "".join(_texts(name, chunks[:n]))
        assert isinstance(err, StreamInterruptedError), repr(err)
        got = err.partial_output.text
        _assert_interrupted(events, err, got, srv)
    assert sent.startswith(got) and len(got) >= len("".join(TEXT[:2]))


@pytest.mark.parametrize("name", NAMES)
async def test_stall_mid_stream_hits_idle_timeout(name):
    p = PROVIDERS[name]
    chunks = p.text(TEXT)
    n = _after(name, chunks, 2)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, stall_after=n, stall_max=5))
        events, err, elapsed = await _invoke(_invoker(p, srv, retry_config=RetryConfig(idle_timeout=0.3)))
        _assert_interrupted(events, err, "".join(_texts(name, chunks[:n])), srv)
        assert await srv.wait_for(lambda s: s.requests[0].disconnected, 1.0)  # connection closed
    assert isinstance(err.cause, LMTimeoutError) and "idle" in str(err)
    assert 0.28 <= elapsed < 2.0, elapsed


@pytest.mark.parametrize("name", NAMES)
async def test_malformed_sse_json_mid_stream(name):
    """`data: {not json` after 2 text deltas.

    Defined outcome: openai-chat (lmstream's parser), openai and google (their SDKs) fail with
    StreamInterruptedError. The anthropic SDK only decodes *named* events it knows and skips
    unnamed `data:` lines, so an unnamed garbage line is ignored and the answer completes; a
    garbage payload under a known event name is an error like everywhere else.
    """
    p = PROVIDERS[name]
    chunks = p.text(TEXT)
    at = _after(name, chunks, 2)
    sent = "".join(_texts(name, chunks[:at]))
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, garbage=b"data: {not json\n\n", garbage_at=at))
        events, res, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        if p.wire == "anthropic":
            assert res.text == "".join(TEXT) and events[-1].type == "done"
        else:
            _assert_interrupted(events, res, sent, srv)
            assert "malformed" in str(res)
    if p.wire == "anthropic":
        async with WireServer() as srv:
            bad = b"event: content_block_delta\ndata: {not json\n\n"
            srv.enqueue(Script(chunks=chunks, garbage=bad, garbage_at=at))
            events, res, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
            _assert_interrupted(events, res, sent, srv)


@pytest.mark.parametrize("name", NAMES)
async def test_malformed_sse_before_first_token_is_provider_error(name):
    """Garbage before any token: a clean ProviderError (not a raw JSONDecodeError), not retried."""
    p = PROVIDERS[name]
    if p.wire == "anthropic":
        pytest.skip("the anthropic SDK ignores unnamed garbage lines (see the test above)")
    chunks = p.text(TEXT)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, garbage=b"data: {not json\n\n", garbage_at=_after(name, chunks, 1) - 1))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert len(srv.requests) == 1
    assert type(err) is ProviderError and not err.retryable and "malformed" in str(err)
    assert _response_text(events) == "" and events[-1].type == "error"


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


@pytest.mark.parametrize("name", NAMES)
async def test_in_band_error_mid_stream(name):
    p = PROVIDERS[name]
    chunks = _inband(name)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks), Script(chunks=p.text(TEXT)))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        _assert_interrupted(events, err, "".join(_texts(name, chunks)), srv)
    assert err.partial_output.text == "Partial"
    assert isinstance(err.cause, ProviderError)


def _no_end_marker(name: str) -> list[bytes]:
    chunks = PROVIDERS[name].text(TEXT)
    wire = PROVIDERS[name].wire
    if wire == "chat":  # no finish_reason chunk, no [DONE]
        chunks = [c for c in fx.openai_chat_text(TEXT, done=False) if b'"finish_reason":"stop"' not in c]
    elif wire == "responses":  # no response.completed
        chunks = [c for c in chunks if b"response.completed" not in c]
    elif wire == "anthropic":  # no message_stop
        chunks = fx.anthropic_text(TEXT, stop=False)
    elif wire == "bedrock":  # no messageStop (nor the metadata after it)
        chunks = es.bedrock_text(TEXT, stop_reason=None)
    else:  # no finishReason
        chunks = [c.replace(b',"finishReason": "STOP"', b"") for c in chunks]
    assert not any(
        m in b"".join(chunks) for m in (b"[DONE]", b'"stop"', b"response.completed", b"message_stop", b"finishReason")
    )
    return chunks


@pytest.mark.parametrize("name", NAMES)
async def test_clean_eof_without_end_marker_is_interrupted(name):
    """The HTTP response completes normally but the provider's end marker never came: a
    dropped stream, not a short answer (the openai SDK itself accepts this silently)."""
    p = PROVIDERS[name]
    chunks = _no_end_marker(name)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks))
        events, err, _ = await _invoke(_invoker(p, srv, retry_config=FAST))
        assert srv.requests[0].outcome == "complete"
        _assert_interrupted(events, err, "".join(TEXT), srv)
    assert "end marker" in str(err)


# =========================================================================== cancellation


@pytest.mark.parametrize("name", NAMES)
async def test_cancel_process_closes_connection(name):
    p = PROVIDERS[name]
    text = tuple(f" w{i}" for i in range(30))
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(text), delay_between=0.1))  # ~3 s if left alone
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(p, srv))
        emitter = EventEmitter.with_stream_handler()
        before = asyncio.all_tasks()
        task = asyncio.create_task(lmrp.process(q="x", event_emitter=emitter))
        events: list[Any] = []
        cancelled_at = 0.0
        async with asyncio.timeout(3):
            async for e in emitter.stream():
                events.append(e)
                if e.type == "response" and len(events) == 2:
                    task.cancel()
                    cancelled_at = time.perf_counter()
        assert time.perf_counter() - cancelled_at < 1.0  # stream() ended soon after the cancel
        assert await srv.wait_for(lambda s: s.disconnects >= 1, 1.0)
        assert srv.requests[0].outcome == "client-closed"
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        left = {t for t in asyncio.all_tasks() - before if not t.done()} - {asyncio.current_task()}
        assert not left, left
    assert events[-1].type == "error" and events[-1].metadata["error_type"] == "CancelledError"
    assert len(srv.requests) == 1


# =========================================================================== secrets


def _exc_texts(exc: BaseException) -> list[str]:
    out = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    partial = getattr(exc, "partial_output", None)
    if partial is not None:
        out.append(repr(partial))
    return out


@pytest.mark.parametrize("name", NAMES)
async def test_key_never_leaks(name, caplog):
    p = PROVIDERS[name]
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="lmstream")
    seen: list[str] = []
    async with WireServer() as srv:
        srv.enqueue(Script(status=401, body=p.error(401)), Script(chunks=_inband(name)))
        inv = _invoker(p, srv, retry_config=RetryConfig(max_retries=1, base_delay=0.01))
        seen.append(repr(inv))
        for _ in range(2):  # 401, then an in-band error mid-stream
            events, err, _ = await _invoke(inv)
            assert isinstance(err, ProviderError | StreamInterruptedError), repr(err)
            seen += _exc_texts(err) + [e.to_json() for e in events]
        assert any(KEY in v for v in srv.requests[0].headers.values())  # the key was really sent
    events, err, _ = await _invoke(_invoker(p, _ClosedPort(), retry_config=RetryConfig(max_retries=0)))
    seen += _exc_texts(err) + [e.to_json() for e in events]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert not [s for s in seen if KEY in s]


async def test_cli_events_never_show_key():
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(
            Script(chunks=p.text(TEXT)), Script(status=401, body=p.error(401)), Script(chunks=_inband("openai-chat"))
        )
        outputs = []
        for _ in range(3):  # success, 401, in-band error
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lmstream.cli",
                "--model",
                "openai-chat/x",
                "--base-url",
                srv.base_url + "/v1",
                "--events",
                "hi",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, errb = await asyncio.wait_for(proc.communicate(), 20)
            outputs.append((proc.returncode, out.decode(), errb.decode()))
        assert all(KEY in r.headers.get("authorization", "") for r in srv.requests)
    assert [rc for rc, _, _ in outputs] == [0, 1, 1]
    assert json.loads(outputs[0][1].splitlines()[-1])["type"] == "done"
    assert json.loads(outputs[1][1].splitlines()[-1])["type"] == "error"
    assert all(KEY not in out + err for _, out, err in outputs)


# =========================================================================== backpressure


class _WatchedStream(StreamEventHandler):
    """Records the largest buffer it ever held."""

    high_water = 0

    def emit_nowait(self, event):
        super().emit_nowait(event)
        if len(self) > self.high_water:
            self.high_water = len(self)


async def test_slow_consumer_bounded_buffer_and_request_not_blocked():
    p = PROVIDERS["openai-chat"]
    deltas = tuple("é" if i % 7 == 0 else chr(0x61 + i % 26) for i in range(5000))  # 5,000 one-char deltas
    full = "".join(deltas)
    handler = _WatchedStream(max_buffer=64)
    emitter = EventEmitter([handler])
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(deltas)))
        task = asyncio.create_task(_invoker(p, srv).invoke("hi", event_emitter=emitter))
        stream = emitter.stream()
        first = await asyncio.wait_for(anext(stream), 5)  # read one event, then stop reading
        out = await asyncio.wait_for(task, 10)  # the request finishes without the consumer
        assert srv.requests[0].outcome == "complete"
    assert out.text == full
    assert handler.high_water <= 64 + 4, handler.high_water
    rest = [e async for e in stream]  # resume: every event, in order, merged runs marked
    events = [first, *rest]
    assert _response_text(events) == full
    assert events[-1].type == "done"
    assert any(e.metadata.get("coalesced", 0) > 1 for e in events)
    assert handler.coalesced > 0
    await emitter.close()


# =========================================================================== blocking user handler


class _Blocking(BaseEventHandler):
    """A user handler whose async emit never returns."""

    def __init__(self) -> None:
        super().__init__("blocking")
        self.gate = asyncio.Event()  # never set
        self.seen: list[str] = []

    async def emit(self, event):
        self.seen.append(event.type)
        await self.gate.wait()


async def test_blocking_handler_is_skipped_after_handler_timeout(caplog):
    """Policy: an async handler gets `handler_timeout` seconds per event, then it is cancelled,
    logged and skipped; the request and the other handlers go on."""
    p = PROVIDERS["openai-chat"]
    stream_handler, blocking = StreamEventHandler(), _Blocking()
    emitter = EventEmitter([stream_handler, blocking], handler_timeout=0.1)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT[:2])))
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(p, srv))
        task = asyncio.create_task(lmrp.process(q="x", event_emitter=emitter))
        events = [e async for e in emitter.stream()]
        out = await asyncio.wait_for(task, 3)  # 3 events x 0.1 s, not forever
    assert out.text == "".join(TEXT[:2]) and [e.type for e in events] == ["response", "response", "done"]
    assert blocking.seen == ["response", "response", "done"]
    assert any("handler_timeout" in r.getMessage() for r in caplog.records)
    await emitter.close()


async def test_blocking_handler_without_timeout_holds_the_request():
    """With `handler_timeout=None` handlers are awaited in order with no bound: a handler that
    never returns holds the request (the stream handler before it got the first token; the
    server had finished sending). The caller bounds it by cancelling."""
    p = PROVIDERS["openai-chat"]
    stream_handler, blocking = StreamEventHandler(), _Blocking()
    emitter = EventEmitter([stream_handler, blocking], handler_timeout=None)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(p, srv))
        task = asyncio.create_task(lmrp.process(q="x", event_emitter=emitter))
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert not done  # held by the handler
        assert blocking.seen == ["response"] and len(stream_handler) == 1
        task.cancel()  # one cancel ends it: the final event gets only a bounded moment
        done, _ = await asyncio.wait({task}, timeout=0.5)
        assert done
        with pytest.raises(asyncio.CancelledError):
            task.result()
    await emitter.close()


async def test_single_cancel_releases_request_blocked_in_handler():
    p = PROVIDERS["openai-chat"]
    emitter = EventEmitter([StreamEventHandler(), _Blocking()], handler_timeout=None)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        task = asyncio.create_task(_invoker(p, srv).invoke("hi", event_emitter=emitter))
        await asyncio.wait({task}, timeout=0.3)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        try:
            assert done
        finally:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)
