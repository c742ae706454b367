"""The wire server's fault injection as the SDKs and httpx see it, and the fixtures' structure."""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import openai
import pytest
from google.genai import types as genai_types

from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .wire_sdk_support import KEY, _anthropic, _events, _openai

# google-genai's own aiohttp subclass warns at import/first use; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

# ------------------------------------------------------------ fault injection


@pytest.mark.asyncio
async def test_drop_after_breaks_stream_for_httpx_and_sdk() -> None:
    chunks = fx.openai_chat_text(("a", "b", "c", "d"))
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, drop_after=3), Script(chunks=chunks, drop_after=3, reset=True))
        got = b""
        async with httpx.AsyncClient(timeout=5.0) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                async with client.stream("POST", f"{srv.base_url}/v1/chat/completions", json={}) as resp:
                    async for piece in resp.aiter_bytes():
                        got += piece
        assert got == b"".join(chunks[:3])
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
            async for _ in stream:
                pass
        assert [r.outcome for r in srv.requests] == ["dropped", "dropped"]
        assert [r.chunks_written for r in srv.requests] == [3, 3]


@pytest.mark.asyncio
async def test_stall_after_read_timeout_and_disconnect_seen() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.anthropic_text(), stall_after=2))
        client = anthropic.AsyncAnthropic(
            base_url=srv.base_url,
            api_key=KEY,
            max_retries=0,
            timeout=anthropic.Timeout(5.0, read=0.3),  # anthropic 2.x is on httpx2
        )
        stream = await client.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        # A mid-body read timeout escapes unwrapped (httpx2.ReadTimeout), not APITimeoutError.
        with pytest.raises(Exception) as info:
            async for _ in stream:
                pass
        assert "Timeout" in type(info.value).__name__
        await stream.close()
        assert await srv.wait_for(lambda s: s.disconnects == 1, timeout=1.5)
        req = srv.requests[0]
        assert req.chunks_written == 2 and req.disconnected and req.outcome == "client-closed"

        srv.enqueue(Script(chunks=fx.gemini_text(), stall_after=1))
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.3)) as raw:
            with pytest.raises(httpx.ReadTimeout):
                async with raw.stream("POST", f"{srv.base_url}/v1beta/models/m:streamGenerateContent?alt=sse") as r:
                    async for _ in r.aiter_bytes():
                        pass
        assert await srv.wait_for(lambda s: s.disconnects == 2, timeout=1.5)
        assert srv.requests[1].chunks_written == 1 and srv.requests[1].query == {"alt": "sse"}


@pytest.mark.asyncio
async def test_client_cancel_closes_connection() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(tuple("abcdefghij")), delay_between=0.05))
        stream = await _openai(srv).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        n = 0
        async for _ in stream:
            n += 1
            if n == 3:
                break
        await stream.close()
        assert await srv.wait_for(lambda s: s.disconnects == 1, timeout=1.5)
        assert srv.requests[0].chunks_written < len(fx.openai_chat_text(tuple("abcdefghij")))


@pytest.mark.asyncio
async def test_garbage_and_unqueued_request() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=[b"data: {}\n\n"], garbage=b"\x00\xffnot-sse\n\n", garbage_at=0))
        async with httpx.AsyncClient(timeout=5.0) as client:
            resp = await client.post(f"{srv.base_url}/x", json={"a": 1})
            assert resp.content == b"\x00\xffnot-sse\n\ndata: {}\n\n"
            resp = await client.post(f"{srv.base_url}/y")
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "wire_no_script"
        assert srv.requests[0].json == {"a": 1} and srv.paths == ["/x", "/y"]


def test_thread_mode_with_sync_sdk() -> None:
    """Sync clients work against the server running in a background thread."""
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("sync", " ok"))))
        client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key=KEY, max_retries=0, timeout=5.0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "sync ok"
        assert srv.wait_for_sync(lambda s: s.requests and s.requests[0].completed, timeout=1.0)


# ------------------------------------------------------- fixture structure


def test_fixture_framing() -> None:
    """Checks the framing facts the invokers rely on."""
    chat = _events(fx.openai_chat_text())
    assert chat[-1] == (None, "[DONE]") and chat[-2][1]["choices"] == [] and chat[0][1]["usage"] is None
    resp = _events(fx.openai_responses_reasoning())
    assert all(ev == data["type"] for ev, data in resp)
    assert [d["sequence_number"] for _, d in resp] == list(range(len(resp)))
    ant = _events(fx.anthropic_tool_use())
    assert all(ev == data["type"] for ev, data in ant)
    assert all(c.endswith(b"\r\n\r\n") and c.startswith(b"data: {") for c in fx.gemini_text())
    assert json.loads(fx.gemini_error_body(429))["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert json.loads(fx.anthropic_error_body(529))["error"]["type"] == "overloaded_error"


@pytest.mark.asyncio
async def test_rechunked_streams_still_parse() -> None:
    """Events split at arbitrary byte offsets (mid-UTF-8 too) still decode."""
    chunks = fx.rechunk(
        fx.anthropic_text(
            (
                "héllo ",
                "wörld ✓",
            )
        ),
        7,
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks))
        async with _anthropic(srv).messages.stream(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text == "héllo wörld ✓"
        await asyncio.sleep(0)


def test_fixtures_validate_strictly_against_sdk_models() -> None:
    """Every event passes the SDKs' pydantic models in strict (validating) mode.

    The SDKs themselves parse leniently (``construct``), so this catches a
    missing required field or a misspelt discriminator the stream tests miss.
    """
    from anthropic.types import RawMessageStreamEvent
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    usage = fx.openai_responses_usage(cache_write_tokens=0)
    responses = TypeAdapter(ResponseStreamEvent)
    for chunks in (
        fx.openai_responses_text(usage=usage),
        fx.openai_responses_reasoning(usage=usage),
        fx.openai_responses_function_call(usage=usage),
        fx.openai_responses_structured(usage=usage),
        fx.openai_responses_error(after_text=("a",)),
        fx.openai_responses_failed(),
    ):
        for _, data in _events(chunks):
            responses.validate_python(data)
    for chunks in (fx.openai_chat_text(reasoning_deltas=("r",)), fx.openai_chat_tool_calls(interleave=True)):
        for _, data in _events(chunks):
            if data != "[DONE]":
                ChatCompletionChunk.model_validate(data)
    messages = TypeAdapter(RawMessageStreamEvent)
    for chunks in (fx.anthropic_thinking(), fx.anthropic_tool_use()):
        for event, data in _events(chunks):
            if event != "ping":
                messages.validate_python(data)
    for chunks in (fx.gemini_thinking(), fx.gemini_function_call()):
        for _, data in _events(chunks):
            genai_types.GenerateContentResponse.model_validate(data)
