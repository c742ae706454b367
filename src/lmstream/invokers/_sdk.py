"""Helpers for providers driven through an official SDK: error mapping and idle timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from ..errors import LMStreamError, LMTimeoutError, ProviderError, RateLimitError
from ._http import parse_retry_after

__all__ = ["map_sdk_error", "with_idle_timeout"]

T = TypeVar("T")


def _sdk_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            kind = err.get("type") or err.get("status")
            return f"{err['message']} ({kind})" if isinstance(kind, str) else str(err["message"])
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(exc) or type(exc).__name__


def map_sdk_error(provider: str, exc: BaseException) -> BaseException:
    """An SDK exception -> the matching lmstream error (unknown errors pass through)."""
    if isinstance(exc, (LMStreamError, asyncio.CancelledError)):
        return exc
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        code = getattr(exc, "code", None)  # google-genai errors carry the HTTP status as .code
        status = code if isinstance(code, int) and 100 <= code < 600 else None
    name = type(exc).__name__
    if status is not None and status < 400:
        # an error event inside a 200 stream (e.g. Anthropic's `event: error`)
        message = _sdk_message(exc)
        transient = any(k in message for k in ("overloaded", "api_error", "UNAVAILABLE", "INTERNAL"))
        return ProviderError(f"in-band error: {message}", provider=provider, retryable=transient)
    if status is not None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        retry_after = parse_retry_after(headers) if headers else None
        message = _sdk_message(exc)
        if status in (401, 403):
            message += " — check the API key (it was sent but rejected)"
        cls = RateLimitError if status == 429 else ProviderError
        return cls(message, status_code=status, provider=provider, retry_after=retry_after)
    if isinstance(exc, ValueError):
        # undecodable stream data (JSONDecodeError, UnicodeDecodeError, google-genai's
        # UnknownApiResponseError): the reply is malformed, a retry would not help
        return ProviderError(f"malformed stream data: {name}: {exc}", provider=provider, retryable=False)
    if "Timeout" in name:
        return LMTimeoutError(f"{provider}: timed out ({name})", retryable=True)
    if "Connection" in name or "Protocol" in name or "ReadError" in name or isinstance(exc, OSError):
        return ProviderError(f"connection failed: {name}: {exc}", provider=provider, retryable=True)
    if name in ("APIError", "ServerError", "ClientError") or ("Error" in name and hasattr(exc, "body")):
        return ProviderError(_sdk_message(exc), provider=provider, retryable=False)
    return exc


async def with_idle_timeout(it: AsyncIterator[T], idle: float | None, provider: str) -> AsyncIterator[T]:
    """Bound the wait for each next item (one timer per stream, rescheduled per item)."""
    if idle is None:
        async for item in it:
            yield item
        return
    anext_ = it.__anext__
    while True:
        try:
            async with asyncio.timeout(idle):
                item = await anext_()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise LMTimeoutError(
                f"{provider}: no data for {idle}s (RetryConfig.idle_timeout)", retryable=True
            ) from None
        yield item


def client_options(base_url: str | None) -> dict[str, Any]:
    return {"base_url": base_url} if base_url else {}
