"""Secrets never leak (events, logs, errors, the CLI); a slow consumer or a blocking handler
never blocks the request beyond its bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback

import pytest

from lmstream import (
    EventEmitter,
    LMRequestProcessor,
    PromptBuilder,
    ProviderError,
    RetryConfig,
    StreamInterruptedError,
)
from lmstream.events import BaseEventHandler, StreamEventHandler
from tests.wire import fixtures as fx
from tests.wire.providers import FAULT_NAMES as NAMES
from tests.wire.providers import KEY, PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.server import Script, WireServer

from .faults_support import _ClosedPort, _inband, _invoke, _response_text

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

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
