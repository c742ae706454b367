"""SDK exceptions map to lmstream errors by exception type, through each provider's table.

The end-to-end behaviour (real SDKs against a loopback server) is in tests/test_faults.py;
this pins the table itself: the real SDK exception classes, the most specific type winning,
and no mapping by class-name lookalikes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import anthropic
import httpx
import httpx2
import openai
import pytest
from google.genai import errors as genai_errors

from lmstream import LMTimeoutError, ProviderError, RateLimitError, build_lm_invoker

REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/x")
REQUEST2 = httpx2.Request("POST", "http://127.0.0.1/v1/x")


def _mapped(provider: str, exc: Exception) -> BaseException:
    """What the provider's skeleton raises for `exc` (the exception itself if unmapped)."""
    inv: Any = build_lm_invoker(f"{provider}/m", credentials="k")
    try:
        inv._raise_mapped(exc)
    except BaseException as raised:  # the outcome is what is asserted
        return raised
    raise AssertionError("_raise_mapped returned")


def _openai_status(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    body = {"error": {"message": "slow down", "type": "requests"}}
    response = httpx.Response(status, request=REQUEST, headers=headers, content=json.dumps(body).encode())
    return openai.APIStatusError("x", response=response, body=body)


def test_openai_status_timeout_connection_and_generic_errors() -> None:
    limited = _mapped("openai", _openai_status(429, {"retry-after": "3"}))
    assert isinstance(limited, RateLimitError) and limited.status_code == 429 and limited.retry_after == 3.0
    assert limited.message == "slow down (requests)" and limited.retryable
    denied = _mapped("openai", _openai_status(401))
    assert type(denied) is ProviderError and "check the API key" in str(denied) and not denied.retryable
    timeout = _mapped("openai", openai.APITimeoutError(request=REQUEST))
    assert isinstance(timeout, LMTimeoutError) and timeout.retryable
    refused = _mapped("openai", openai.APIConnectionError(request=REQUEST))
    assert type(refused) is ProviderError and refused.retryable and refused.status_code is None
    in_band = _mapped("openai", openai.APIError("boom", REQUEST, body={"message": "boom"}))
    assert type(in_band) is ProviderError and not in_band.retryable and "boom" in str(in_band)


def test_anthropic_in_band_error_and_its_httpx_fork() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    response = httpx2.Response(200, request=REQUEST2, content=json.dumps(body).encode())
    in_band = _mapped("anthropic", anthropic.APIStatusError("Overloaded", response=response, body=body))
    assert type(in_band) is ProviderError and in_band.retryable  # overloaded: a retry may cure it
    assert str(in_band) == "anthropic: in-band error: Overloaded (overloaded_error)"
    body["error"]["type"] = "invalid_request_error"
    bad = _mapped("anthropic", anthropic.APIStatusError("bad", response=response, body=body))
    assert type(bad) is ProviderError and not bad.retryable
    dropped = _mapped("anthropic", httpx2.RemoteProtocolError("peer closed connection"))
    assert type(dropped) is ProviderError and dropped.retryable and "RemoteProtocolError" in str(dropped)
    stalled = _mapped("anthropic", httpx2.ReadTimeout("read timed out"))
    assert isinstance(stalled, LMTimeoutError) and stalled.retryable


def test_google_errors_and_its_httpx_transport() -> None:
    unavailable = genai_errors.ServerError(503, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    mapped = _mapped("google", unavailable)
    assert type(mapped) is ProviderError and mapped.status_code == 503 and mapped.retryable
    assert mapped.message == "busy"
    garbage = _mapped("google", genai_errors.UnknownApiResponseError("Failed to parse response as JSON"))
    assert type(garbage) is ProviderError and not garbage.retryable and "malformed" in str(garbage)
    refused = _mapped("google", httpx.ConnectError("All connection attempts failed", request=REQUEST))
    assert type(refused) is ProviderError and refused.retryable
    stalled = _mapped("google", httpx.ReadTimeout("timed out", request=REQUEST))
    assert isinstance(stalled, LMTimeoutError)


class ConnectionTimeoutReadError(Exception):
    """Its name contains every word the old substring matching looked for."""

    body: ClassVar[dict[str, Any]] = {"error": {"message": "not an SDK error"}}


@pytest.mark.parametrize(
    ("provider", "sdk"), [("openai", "openai"), ("anthropic", "anthropic"), ("google", "google-genai")]
)
def test_unknown_types_become_a_typed_error_naming_the_sdk_and_its_version(provider: str, sdk: str) -> None:
    """An SDK release that raises something new (openai 3.x's TypeError for an httpx.Timeout) gets
    a typed `ProviderError` naming the SDK and its version, not mapped by its class name, never
    retried, with the original chained for the traceback."""
    from importlib.metadata import version

    lookalike = ConnectionTimeoutReadError("user code failed")
    mapped = _mapped(provider, lookalike)
    assert type(mapped) is ProviderError and not mapped.retryable and mapped.status_code is None
    assert mapped.__cause__ is lookalike
    assert f"{sdk} {version(sdk)} raised ConnectionTimeoutReadError: user code failed" in str(mapped)
    bug = TypeError("Invalid timeout")
    mapped = _mapped(provider, bug)
    assert type(mapped) is ProviderError and mapped.__cause__ is bug and f"{sdk} {version(sdk)}" in str(mapped)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
def test_builtin_failures_and_lmstream_errors(provider: str) -> None:
    reset = _mapped(provider, ConnectionResetError("reset by peer"))
    assert type(reset) is ProviderError and reset.retryable
    decode = _mapped(provider, json.JSONDecodeError("Expecting value", "x", 0))
    assert type(decode) is ProviderError and not decode.retryable and "malformed" in str(decode)
    assert isinstance(_mapped(provider, TimeoutError()), LMTimeoutError)
    own = ProviderError("already mapped", provider=provider)
    assert _mapped(provider, own) is own
    cancelled = asyncio.CancelledError()
    with pytest.raises(asyncio.CancelledError):
        build_lm_invoker(f"{provider}/m", credentials="k")._raise_mapped(cancelled)  # type: ignore[attr-defined]
