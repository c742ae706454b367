"""Every fault, every provider path: the real SDK / HTTP client against a loopback server.

The four providers of tests/test_providers.py are driven through their real client path
(official SDK, or lmstream's own HTTP for Chat Completions) while tests/wire/server.py injects
the fault. The contract under test is docs/failures.md ("Failure semantics"):

* before the first token: 429 / 408 / 409 / 5xx / connection errors are retried (Retry-After
  honoured), other 4xx are not; `RetryConfig.timeout` bounds the whole thing;
* after the first token: never retried; an `error` event (level ERROR) is the last event,
  `stream()` ends, the task raises `StreamInterruptedError` whose `.partial_output.text` is
  exactly the text of the `response` events emitted, i.e. what the server sent before the fault;
* a stream that ends without the provider's end marker is a dropped stream, not a short answer;
* cancelling `process()` closes the connection at once; secrets never leak; a slow consumer
  never blocks the request.

Here: faults before the first token (retries, status codes, timeouts, non-streams);
test_faults_mid_stream.py: faults after it; test_faults_secrets.py: secrets and backpressure.
Every test here is bounded by short explicit timeouts; the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lmstream import (
    LMTimeoutError,
    ProviderError,
    RateLimitError,
    RetryConfig,
    StreamInterruptedError,
)
from tests.wire.providers import FAULT_NAMES as NAMES
from tests.wire.providers import PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.server import Script, WireServer

from .faults_support import FAST, _ClosedPort, _invoke, _response_text

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


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
