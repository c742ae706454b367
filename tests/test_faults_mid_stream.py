"""Faults after the first token, every provider path: never retried, an `error` event last, the
partial output exactly what was streamed; a stream without its end marker is dropped; cancel closes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from lmstream import (
    EventEmitter,
    LMRequestProcessor,
    LMTimeoutError,
    PromptBuilder,
    ProviderError,
    RetryConfig,
    StreamInterruptedError,
)
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.providers import FAULT_NAMES as NAMES
from tests.wire.providers import PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.server import Script, WireServer

from .faults_support import FAST, _after, _assert_interrupted, _inband, _invoke, _response_text, _texts

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


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
