"""The skeleton every SDK-driven provider shares: open, check, iterate, map errors, close.

A provider built on an official SDK (`openai`, `anthropic`, `google-genai`) supplies three
things: `_open()` (start the SDK's stream), `_translate()` (its events -> deltas) and
`_error_table()` (its exception types -> lmstream errors, see `_sdk_errors`).
`SDKLMInvoker.stream_deltas()` does the rest the same way for all of them: reject a 200 reply
that is a document rather than a stream, bound each wait by the idle timeout, map failures by
exception type, and close the SDK stream however iteration ends.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from types import ModuleType
from typing import Any, ClassVar, NoReturn, TypeVar, Unpack

from ..errors import ConfigurationError, LMStreamError, LMTimeoutError
from ..prompt import Message
from ._http import is_event_stream, not_a_stream_error, resolve_api_key
from ._sdk_errors import ErrorTable, map_error, transport_table, unknown_error
from .base import BaseLMInvoker, CallParams
from .options import InvokerOptions

__all__ = ["SDKLMInvoker", "check_stream_response", "split_turns", "with_idle_timeout"]

T = TypeVar("T")


async def with_idle_timeout(it: AsyncIterator[T], idle: float | None, provider: str) -> AsyncGenerator[T, None]:
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


async def check_stream_response(provider: str, response: Any) -> None:
    """Raise `ProviderError` quoting the server when a 2xx reply is a JSON or HTML document.

    The SDKs would parse such a body as an empty event stream, which lmstream would then
    report (and retry) as a dropped connection, losing the server's message.
    """
    if response is None:
        return
    content_type = response.headers.get("content-type")
    if not is_event_stream(content_type):
        raise not_a_stream_error(provider, response.status_code, content_type, await response.aread())


@functools.cache
def _keywords(method: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(method).parameters)


def fit_keywords(method: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """`request` as keywords `method` takes: fields this SDK version has no keyword for (e.g.
    `temperature` in anthropic 2.x, which the API still accepts) travel in `extra_body`."""
    known = _keywords(getattr(method, "__func__", method))
    extra = {k: v for k, v in request.items() if k not in known}
    if not extra or "extra_body" not in known:
        return request
    fitted = {k: v for k, v in request.items() if k in known}
    fitted["extra_body"] = {**extra, **(request.get("extra_body") or {})}
    return fitted


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
    #: the SDK's distribution on PyPI, named with its version in errors it raises that no table knows
    sdk_distribution: ClassVar[str] = ""
    _errors: ClassVar[ErrorTable | None] = None  # built on first failure, per class

    def __init__(self, model_name: str, *, connect_timeout: float = 10.0, **options: Unpack[InvokerOptions]) -> None:
        options["api_key"] = resolve_api_key(
            options.get("api_key"), self.env_vars, self.provider, required=self.key_required
        )
        super().__init__(model_name, **options)
        self._connect_timeout = connect_timeout
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def install_extra(self) -> str:
        """The extra a missing SDK is installed with (Google on Vertex AI: `vertex`)."""
        return self.sdk_extra

    def _sdk(self) -> ModuleType:
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError as exc:
            raise ConfigurationError(
                f"the {self.sdk_module} SDK is not installed; run: pip install 'lmstream[{self.install_extra}]'"
            ) from exc

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _client_kwargs(self) -> dict[str, Any]:
        """Key, SDK retries off, idle timeout as the read timeout, optional base_url.

        The timeout is the SDK's own `Timeout` type: each SDK runs on its own HTTP stack (openai
        3.x and anthropic 2.x on httpx2, older ones on httpx) and rejects another library's type.
        """
        timeout = self._sdk().Timeout(
            connect=self._connect_timeout, read=self.retry_config.idle_timeout, write=60.0, pool=60.0
        )
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

    # ----- the shared skeleton; a provider fills in the four hooks below it
    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Any]:
        """Open the SDK's stream, check it, translate it with the idle timeout, map errors, close."""
        client = self._get_client()
        try:
            stream = await self._open(client, messages, params.copy())
        except Exception as exc:
            self._raise_mapped(exc)
        try:
            await check_stream_response(self.provider, self._http_response(stream))
            idle = self.retry_config.idle_timeout
            async with (
                aclosing(with_idle_timeout(stream.__aiter__(), idle, self.provider)) as events,
                aclosing(self._translate(events)) as deltas,
            ):
                async for delta in deltas:
                    yield delta
        except Exception as exc:
            self._raise_mapped(exc)
        finally:
            await self._close_stream(stream)

    def _raise_mapped(self, exc: Exception) -> NoReturn:
        cls = type(self)
        table = cls.__dict__.get("_errors")
        if table is None:
            table = {**transport_table(), **self._error_table()}
            cls._errors = table
        mapped = map_error(table, self.provider, exc)
        if mapped is not exc:
            raise mapped from None
        if isinstance(exc, (LMStreamError, asyncio.CancelledError)):
            raise exc
        raise unknown_error(self.provider, exc, self.sdk_distribution or self.sdk_module) from exc

    async def _open(self, client: Any, messages: list[Message], params: CallParams) -> Any:
        """Start one streamed request; return the SDK's stream object (async-iterable)."""
        raise NotImplementedError

    def _translate(self, events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        """The SDK's stream events -> normalised deltas (an async generator)."""
        raise NotImplementedError

    def _error_table(self) -> ErrorTable:
        """This SDK's exception types -> mappers (`_sdk_errors`); httpx's are added."""
        return {}

    def _http_response(self, stream: Any) -> Any:
        """The stream's HTTP response (headers, `aread()`), or None when the SDK hides it."""
        return getattr(stream, "response", None)

    async def _close_stream(self, stream: Any) -> None:
        await stream.close()
