"""SDK exceptions -> lmstream errors, by exception type through one table per SDK.

Like httpx's `map_httpcore_exceptions()`: each SDK invoker lists its SDK's exception types
with the kind of failure each one is (`ErrorTable`); `map_error` walks the raised exception's
class hierarchy (its MRO) and uses the most specific type listed, so no class names or
message substrings are matched. Types not in the table pass through unchanged (the base
class turns them into `StreamInterruptedError` after the first token).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ..errors import LMStreamError, LMTimeoutError, ProviderError, RateLimitError
from ._http import parse_retry_after
from ._overflow import context_overflow

__all__ = [
    "ErrorMapper",
    "ErrorTable",
    "api_error",
    "connection_error",
    "malformed_error",
    "map_error",
    "status_error",
    "timeout_error",
    "transport_table",
    "unknown_error",
]

#: (provider, exception) -> the lmstream error to raise instead
ErrorMapper = Callable[[str, BaseException], BaseException]
#: exception type -> mapper; the raised exception's most specific listed class wins
ErrorTable = Mapping[type[BaseException], ErrorMapper]

#: error kinds a provider reports inside a 200 stream that a retry may cure
_TRANSIENT_KINDS = frozenset({"overloaded_error", "api_error", "server_error", "UNAVAILABLE", "INTERNAL"})


def _body_error(exc: BaseException) -> tuple[str | None, str | None]:
    """(message, kind) from an SDK error's parsed JSON body, when it has one."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            kind = err.get("type") or err.get("status")
            return str(err["message"]), kind if isinstance(kind, str) else None
    return None, None


def _message(exc: BaseException) -> str:
    message, kind = _body_error(exc)
    if message:
        return f"{message} ({kind})" if kind else message
    text = getattr(exc, "message", None)
    if isinstance(text, str) and text:
        return text
    return str(exc) or type(exc).__name__


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)  # google-genai errors carry the HTTP status as .code
    return code if isinstance(code, int) and 100 <= code < 600 else None


def status_error(provider: str, exc: BaseException) -> BaseException:
    """An error reply with an HTTP status (or an error event inside a 200 stream)."""
    status = _status(exc)
    if status is None:
        return api_error(provider, exc)
    if status < 400:  # an error event inside a 200 stream (e.g. Anthropic's `event: error`)
        _, kind = _body_error(exc)
        return ProviderError(f"in-band error: {_message(exc)}", provider=provider, retryable=kind in _TRANSIENT_KINDS)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    retry_after = parse_retry_after(headers) if headers else None
    message = _message(exc)
    if 400 <= status < 500:
        overflow = context_overflow(message, getattr(exc, "body", None), provider, status)
        if overflow is not None:
            return overflow
    if status in (401, 403):
        message += " — check the API key (it was sent but rejected)"
    cls = RateLimitError if status == 429 else ProviderError
    return cls(message, status_code=status, provider=provider, retry_after=retry_after)


def timeout_error(provider: str, exc: BaseException) -> BaseException:
    return LMTimeoutError(f"{provider}: timed out ({type(exc).__name__})", retryable=True)


def connection_error(provider: str, exc: BaseException) -> BaseException:
    return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True)


def malformed_error(provider: str, exc: BaseException) -> BaseException:
    """Undecodable stream data: the reply is malformed, a retry would not help."""
    return ProviderError(f"malformed stream data: {type(exc).__name__}: {exc}", provider=provider, retryable=False)


def api_error(provider: str, exc: BaseException) -> BaseException:
    """The SDK's generic API error (no status): the provider's message, not retried."""
    return ProviderError(_message(exc), provider=provider, retryable=False)


#: what every SDK may let through from the layers below it
_BUILTIN: dict[type[BaseException], ErrorMapper] = {
    TimeoutError: timeout_error,
    OSError: connection_error,
    ValueError: malformed_error,  # JSONDecodeError, UnicodeDecodeError, ...
}


#: the HTTP stacks the SDKs run on: httpx, and its fork httpx2 (openai 3.x, anthropic 2.x)
HTTP_STACKS = ("httpx", "httpx2")


def transport_table(*module_names: str) -> dict[type[BaseException], ErrorMapper]:
    """Timeouts and transport failures of httpx-like modules (by default every stack in
    `HTTP_STACKS`) that are already imported; an SDK raises them raw while a stream is read."""
    table: dict[type[BaseException], ErrorMapper] = {}
    for name in module_names or HTTP_STACKS:
        module: Any = sys.modules.get(name)
        if module is not None:
            table[module.TimeoutException] = timeout_error
            table[module.TransportError] = connection_error
    return table


def sdk_version(distribution: str) -> str:
    """The installed version of an SDK's distribution (`google-genai`), for error messages."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def unknown_error(provider: str, exc: BaseException, sdk: str) -> ProviderError:
    """An exception no table knows, e.g. an SDK release that changed its types: typed, naming the
    SDK and its version (the cause stays chained), never retried (it would fail the same way)."""
    return ProviderError(
        f"{sdk} {sdk_version(sdk)} raised {type(exc).__name__}: {exc}", provider=provider, retryable=False
    )


def map_error(table: ErrorTable, provider: str, exc: BaseException) -> BaseException:
    """The lmstream error for `exc` (lmstream errors, cancellation and unknown types: `exc`)."""
    if isinstance(exc, (LMStreamError, asyncio.CancelledError)):
        return exc
    for cls in type(exc).__mro__:
        mapper = table.get(cls) or _BUILTIN.get(cls)
        if mapper is not None:
            return mapper(provider, exc)
    return exc


def openai_table(openai: Any) -> ErrorTable:
    """The openai SDK's exception types (LiteLLM's exceptions subclass them too)."""
    return {
        openai.APIStatusError: status_error,
        openai.APITimeoutError: timeout_error,
        openai.APIConnectionError: connection_error,
        openai.APIResponseValidationError: malformed_error,
        openai.APIError: api_error,  # e.g. an `error` event the SDK raises mid-stream
    }


def loaded_sdk_table() -> ErrorTable:
    """For adapters over other libraries (LiteLLM, LangChain): the error types of the SDKs
    below them that are already imported, plus httpx's transport errors."""
    table: dict[type[BaseException], ErrorMapper] = dict(transport_table())
    openai: Any = sys.modules.get("openai")
    if openai is not None:
        table.update(openai_table(openai))
    return table


def raise_mapped(provider: str, exc: BaseException, sdk: str) -> NoReturn:
    """Re-raise `exc` as the matching lmstream error; an unknown `Exception` from the library
    `sdk` (a distribution name) becomes a `ProviderError` naming it and its version."""
    mapped = map_error(loaded_sdk_table(), provider, exc)
    if mapped is not exc:
        raise mapped from None
    if isinstance(exc, Exception) and not isinstance(exc, LMStreamError):
        raise unknown_error(provider, exc, sdk) from exc
    raise exc
