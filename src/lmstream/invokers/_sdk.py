"""Helpers for providers driven through an official SDK: error mapping and idle timeouts."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any, ClassVar, NoReturn, TypeVar

from ..errors import ConfigurationError, LMStreamError, LMTimeoutError, ProviderError, RateLimitError
from ..prompt import Message
from ._http import parse_retry_after, resolve_api_key
from .base import BaseLMInvoker

__all__ = ["SDKLMInvoker", "map_sdk_error", "raise_mapped", "split_turns", "with_idle_timeout"]

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


def raise_mapped(provider: str, exc: BaseException) -> NoReturn:
    """Re-raise an SDK exception as the matching lmstream error (unknown ones unchanged)."""
    mapped = map_sdk_error(provider, exc)
    if mapped is exc:
        raise exc
    raise mapped from None


def split_turns(
    messages: list[Message], assistant_role: str, parts: Callable[[Message], list[dict[str, Any]]], key: str
) -> tuple[str, list[dict[str, Any]]]:
    """System text apart; tool results travel in user turns; adjacent same-role turns merge.

    Anthropic and Gemini both want this shape and differ only in role name and part format.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        role = assistant_role if m.role == "assistant" else "user"
        items = parts(m)
        if not items:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1][key].extend(items)
        else:
            turns.append({"role": role, key: items})
    return "\n\n".join(system), turns


class SDKLMInvoker(BaseLMInvoker):
    """An invoker driven through an official SDK: key lookup, one client per event loop."""

    env_vars: ClassVar[tuple[str, ...]] = ()
    #: an instance may set this False before `__init__` (Vertex AI authenticates otherwise)
    key_required: bool = True
    sdk_module: ClassVar[str] = ""
    sdk_extra: ClassVar[str] = ""

    def __init__(
        self,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        default_hyperparameters: dict[str, Any] | None = None,
        retry_config: Any = None,
        tools: Any = None,
        response_schema: Any = None,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            model_name,
            api_key=resolve_api_key(api_key, self.env_vars, self.provider, required=self.key_required),
            base_url=base_url,
            default_hyperparameters=default_hyperparameters,
            retry_config=retry_config,
            tools=tools,
            response_schema=response_schema,
        )
        self._connect_timeout = connect_timeout
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _sdk(self) -> ModuleType:
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError as exc:
            raise ConfigurationError(
                f"the {self.sdk_module} SDK is not installed; run: pip install 'lmstream[{self.sdk_extra}]'"
            ) from exc

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _client_kwargs(self, timeout_cls: Any) -> dict[str, Any]:
        """Key, SDK retries off, idle timeout as the read timeout, optional base_url."""
        timeout = timeout_cls(connect=self._connect_timeout, read=self.retry_config.idle_timeout, write=60.0, pool=60.0)
        kwargs: dict[str, Any] = {"api_key": self._api_key, "max_retries": 0, "timeout": timeout}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        return kwargs

    async def _close_client(self, client: Any) -> None:
        await client.close()

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # SDK clients cannot cross loops
            self._client = self._make_client()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await self._close_client(client)
