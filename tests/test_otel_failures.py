"""Tracing when a request fails: error status and duration, parser errors kept out of spans,
retries as span events, cancelled and interrupted streams with their partial counts."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.trace import StatusCode

from lmstream import EventEmitter, RetryConfig
from tests.otel_support import Telemetry, _attrs, _lmrp
from tests.wire.providers import PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

# =========================================================================== failures


async def test_failure_marks_span_and_duration(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(status=400, body=p.error(400)))
        inv = _invoker(p, srv, retry_config=RetryConfig(max_retries=2, base_delay=0.01))
        _events, err = await _process(_lmrp(inv), q="x")
        await inv.aclose()
        assert len(srv.requests) == 1
    assert type(err).__name__ == "ProviderError"
    chat, parent = tel.span("chat gpt-4o-mini"), tel.span("lmstream.process")
    for s in (chat, parent):
        assert _attrs(s)["error.type"] == "ProviderError"
        assert s.status.status_code == StatusCode.ERROR and "HTTP 400" in (s.status.description or "")
    assert "gen_ai.usage.output_tokens" not in _attrs(chat) and "gen_ai.response.time_to_first_chunk" not in _attrs(
        chat
    )
    (d,) = tel.points("gen_ai.client.operation.duration")
    assert dict(d.attributes)["error.type"] == "ProviderError"
    assert tel.points("gen_ai.client.token.usage") == []
    assert tel.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_parser_error_keeps_the_answer_out_of_spans(tel: Telemetry) -> None:
    from lmstream import JSONOutputParser

    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv)
        _events, err = await _process(_lmrp(inv, output_parser=JSONOutputParser()), q="x")
        await inv.aclose()
    assert type(err).__name__ == "OutputParserError" and "some ideas" in str(err)
    parent = tel.span("lmstream.process")
    assert _attrs(parent)["error.type"] == "OutputParserError"
    assert parent.status.description == "OutputParserError"
    assert "some ideas" not in json.dumps([s.to_json() for s in tel.spans()])  # the answer is content


async def test_retried_429_is_a_span_event(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(status=429, headers={"Retry-After": "0"}, body=p.error(429)), Script(chunks=p.text(TEXT)))
        inv = _invoker(p, srv, retry_config=RetryConfig(max_retries=2, base_delay=0.01))
        _events, out = await _process(_lmrp(inv), q="x")
        await inv.aclose()
        assert len(srv.requests) == 2
    assert out.text == "".join(TEXT)
    chat = tel.span("chat gpt-4o-mini")  # one span for the call, whatever its attempts
    (ev,) = chat.events
    assert ev.name == "lmstream.retry"
    assert dict(ev.attributes or {}) == {
        "lmstream.retry.attempt": 1,
        "lmstream.retry.delay": 0.0,
        "error.type": "RateLimitError",
        "http.response.status_code": 429,
    }
    assert chat.status.status_code == StatusCode.UNSET and "error.type" not in _attrs(chat)
    assert _attrs(chat)["gen_ai.usage.output_tokens"] == len(TEXT)


async def test_cancel_ends_spans_with_partial_count(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        chunks = p.text(TEXT)
        srv.enqueue(Script(chunks=chunks, stall_after=4))  # role chunk + 3 text deltas, then silence
        inv = _invoker(p, srv)
        emitter = EventEmitter.with_stream_handler()
        task = asyncio.create_task(_lmrp(inv).process(q="x", event_emitter=emitter))
        seen = 0
        async for e in emitter.stream():
            seen += e.type == "response"
            if seen == 3:
                task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await emitter.close()
        await inv.aclose()
    chat, parent = tel.span("chat gpt-4o-mini"), tel.span("lmstream.process")
    for s in (chat, parent):
        assert _attrs(s)["error.type"] == "CancelledError" and s.status.status_code == StatusCode.ERROR
        assert s.end_time is not None and not s.events  # a cancel is no fault: no exception event
    assert _attrs(chat)["gen_ai.usage.output_tokens"] == 3 and _attrs(chat)["lmstream.response.chunks"] == 3
    (d,) = tel.points("gen_ai.client.operation.duration")
    assert dict(d.attributes)["error.type"] == "CancelledError"
    assert len(tel.points("gen_ai.client.operation.time_to_first_chunk")) == 1
    assert tel.points("gen_ai.client.operation.time_per_output_chunk") == []  # the end was no chunk


async def test_interrupted_stream_keeps_partial_tokens(tel: Telemetry) -> None:
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT), drop_after=3))  # role chunk + 2 text deltas, then the drop
        inv = _invoker(p, srv)
        _events, err = await _process(_lmrp(inv), q="x")
        await inv.aclose()
    assert type(err).__name__ == "StreamInterruptedError"
    a = _attrs(tel.span("chat gpt-4o-mini"))
    assert a["error.type"] == "StreamInterruptedError"
    assert a["gen_ai.usage.output_tokens"] == 2 and a["gen_ai.response.finish_reasons"] == ("error",)
    out_tokens = [pt for pt in tel.points("gen_ai.client.token.usage")]
    assert [pt.sum for pt in out_tokens] == [2]
