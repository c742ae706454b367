"""botocore plumbing: a blocking event stream read from the event loop through a worker thread,
and botocore exceptions -> lmstream errors (by class name: botocore stays an optional import)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import ConfigurationError, LMTimeoutError, ProviderError, RateLimitError
from ._http import parse_retry_after
from ._overflow import context_overflow

__all__ = ["Secret", "ThreadedStream", "iterate_in_thread", "map_aws_error"]

#: in-band exception events worth a retry (before the first token)
_TRANSIENT = {
    "internalServerException",
    "serviceUnavailableException",
    "throttlingException",
    "modelStreamErrorException",
    "InternalServerException",
    "ServiceUnavailableException",
    "ThrottlingException",
    "ModelStreamErrorException",
}
#: botocore's event-stream framing errors (bad prelude, CRC mismatch, oversized frame)
_FRAMING = {
    "ParserError",
    "DuplicateHeader",
    "InvalidHeadersLength",
    "InvalidPayloadLength",
    "ChecksumMismatch",
    "NoInitialResponseError",
}


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def map_aws_error(provider: str, exc: BaseException) -> BaseException:
    """A botocore/urllib3 exception -> the matching lmstream error (unknown ones unchanged)."""
    names = _names(exc)
    if "ClientError" in names:
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = f"{error.get('Message') or exc} ({code})" if code else str(exc)
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        if "EventStreamError" in names or not isinstance(status, int):
            # an exception event inside the 200 stream (`:message-type: exception`)
            return ProviderError(f"in-band error: {message}", provider=provider, retryable=code in _TRANSIENT)
        if code == "ValidationException":  # Bedrock's input-length check is a validation error
            overflow = context_overflow(str(error.get("Message") or ""), None, provider, status)
            if overflow is not None:
                return overflow
        retry_after = parse_retry_after(meta.get("HTTPHeaders") or {})
        if status == 429 or code in ("ThrottlingException", "TooManyRequestsException"):
            return RateLimitError(message, status_code=status, provider=provider, retry_after=retry_after)
        if status in (401, 403):
            message += " — check the API key or AWS credentials (they were sent but rejected)"
        return ProviderError(message, status_code=status, provider=provider, retry_after=retry_after)
    if names & _FRAMING:
        return ProviderError(f"malformed stream data: {type(exc).__name__}: {exc}", provider=provider, retryable=False)
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return ConfigurationError(
            "no AWS credentials for Bedrock: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, "
            "or pass a Bedrock API key as credentials= (or AWS_BEARER_TOKEN_BEDROCK)"
        )
    if "NoRegionError" in names:
        return ConfigurationError("no AWS region for Bedrock: set AWS_REGION or pass config={'region': ...}")
    if "ParamValidationError" in names:
        return ConfigurationError(f"Bedrock rejected the request before sending it: {exc}")
    if names & {"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError"}:
        return LMTimeoutError(f"{provider}: timed out ({type(exc).__name__})", retryable=True)
    if names & {"EndpointConnectionError", "ConnectionError", "ProtocolError", "HTTPClientError", "HTTPError"}:
        return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True)
    if isinstance(exc, OSError):
        return ProviderError(f"connection failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True)
    return exc


class Secret(str):
    """A header value sent as it is but shown as `***` in reprs (botocore logs the request's
    headers at DEBUG, and log records are formatted lazily)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def _socket_of(stream: Any) -> socket.socket | None:
    raw = getattr(stream, "_raw_stream", None)  # botocore EventStream -> urllib3 HTTPResponse
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is None:  # http.client response -> socket file -> socket
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


class ThreadedStream:
    """A blocking botocore event stream iterated in a worker thread, read from the loop.

    The worker appends to a buffer and wakes the loop only when it is waiting, so a burst of
    events costs one wake-up, not one per event. `close()` (from the loop) shuts the socket
    down, which wakes a worker blocked in recv() at once (closing it from another thread would
    not); the worker then closes the response it owns.
    """

    def __init__(self, open_stream: Callable[[], Any], name: str) -> None:
        self._open = open_stream
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._buf: list[Any] = []
        self._end: BaseException | bool | None = False  # False: running; None: done; exc: failed
        self._waiting = False
        self._wake = asyncio.Event()
        self._stream: Any = None
        self._closed = False
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _push(self, item: Any = None, end: BaseException | bool | None = False) -> None:
        with self._lock:
            if item is not None:
                self._buf.append(item)
            if end is not False:
                self._end = end
            wake, self._waiting = self._waiting, False
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                pass

    def _work(self) -> None:
        stream = None
        try:
            stream = self._open()
            with self._lock:
                self._stream = stream
                if self._closed:
                    return
            for event in stream:
                if self._closed:
                    return
                self._push(event)
            self._push(end=None)
        except BaseException as exc:
            self._push(end=exc)
        finally:
            if stream is not None:
                try:
                    stream.close()
                except Exception:
                    pass

    async def items(self, idle: float | None, provider: str) -> AsyncIterator[Any]:
        """Events as they arrive; the worker's exception is raised mapped to lmstream's errors."""
        while True:
            with self._lock:
                batch, self._buf = self._buf, []
                end = self._end
                if not batch and end is False:
                    self._waiting = True
                    self._wake.clear()
            for item in batch:
                yield item
            if batch:
                continue
            if end is None:
                return
            if isinstance(end, BaseException):
                raise map_aws_error(provider, end) from None
            try:
                async with asyncio.timeout(idle):
                    await self._wake.wait()
            except TimeoutError:
                raise LMTimeoutError(
                    f"{provider}: no data for {idle}s (RetryConfig.idle_timeout)", retryable=True
                ) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            # a finished worker may have handed its connection back to the pool: leave it be
            stream = self._stream if self._end is False else None
        sock = _socket_of(stream) if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def iterate_in_thread(open_stream: Callable[[], Any], name: str) -> ThreadedStream:
    """Run `open_stream()` and iterate what it returns in a worker thread; see ThreadedStream."""
    return ThreadedStream(open_stream, name)
