"""Shared HTTP plumbing: credentials, a fast SSE reader, and error mapping.

Providers are leaves; this module knows HTTP, not events.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from .. import _json
from ..errors import ConfigurationError, LMStreamError, LMTimeoutError, ProviderError, RateLimitError
from ._overflow import context_overflow

__all__ = [
    "resolve_api_key",
    "iter_sse",
    "error_from_status",
    "map_transport_error",
    "ClientCache",
    "parse_retry_after",
    "is_event_stream",
    "not_a_stream_error",
]


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[7:]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def resolve_api_key(
    explicit: str | None, env_vars: tuple[str, ...], provider: str, required: bool = True
) -> str | None:
    """The key from the argument, the environment, or `.env` in the working directory."""
    if explicit:
        return explicit
    for name in env_vars:
        value = os.environ.get(name)
        if value:
            return value
    dotenv = _read_dotenv(Path.cwd() / ".env")
    for name in env_vars:
        if dotenv.get(name):
            return dotenv[name]
    if required:
        raise ConfigurationError(
            f"no API key for {provider}: set the environment variable {env_vars[0]} "
            f"(or put {env_vars[0]}=... in .env), or pass credentials=/api_key=",
            setting="api_key",
            env_var=env_vars[0],
        )
    return None


_SSL: Any = None


def _ssl_context() -> Any:
    """One TLS context for every client: building one costs ~20 ms and ~100 KiB."""
    global _SSL
    if _SSL is None:
        import ssl

        import certifi

        _SSL = ssl.create_default_context(cafile=certifi.where())
    return _SSL


def _no_ca_context() -> Any:
    """For a client whose every request is plain http:// (a local server): loading the CA bundle
    costs more than a whole first call (0.02-0.2 s), and nothing would use it. Verification stays
    on with no CA, so an https:// request from such a client fails; it is never unverified."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class _Shard:
    __slots__ = ("active", "client")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.active = 0


class ClientCache:
    """httpx clients for the running event loop (a client cannot cross loops), sharded.

    Each client serves at most `shard_size` streams at once and more clients open as needed.
    httpx's connection pool does work proportional to its number of connections whenever a
    request starts or ends, so one client carrying 1,000 concurrent streams costs quadratic
    time and shows up as per-token latency; shards keep that bounded. First fit keeps
    low-concurrency traffic on one client, so keep-alive connections are reused.
    """

    shard_size = 64

    def __init__(self, *, plain_http: bool = False, **kwargs: Any) -> None:
        """`plain_http`: every request goes to an http:// URL (redirects are not followed), so the
        clients skip loading the CA bundle."""
        self._plain_http = plain_http
        self._kwargs = kwargs
        self._shards: list[_Shard] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def acquire(self) -> _Shard:
        """A shard with room for one more stream; pair with `release()`."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._shards = []
            self._loop = loop
        for shard in self._shards:
            if shard.active < self.shard_size and not shard.client.is_closed:
                shard.active += 1
                return shard
        import httpx

        limits = httpx.Limits(max_connections=self.shard_size, max_keepalive_connections=self.shard_size)
        verify = _no_ca_context() if self._plain_http else _ssl_context()
        shard = _Shard(httpx.AsyncClient(**{"limits": limits, "verify": verify, **self._kwargs}))
        shard.active = 1
        self._shards.append(shard)
        return shard

    @staticmethod
    def release(shard: _Shard) -> None:
        shard.active -= 1

    async def aclose(self) -> None:
        shards, self._shards = self._shards, []
        if self._loop is asyncio.get_running_loop():
            for shard in shards:
                await shard.client.aclose()


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` / `Retry-After` (delta seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = _json.loads(body)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            kind = err.get("type") or err.get("status") or err.get("code")
            if msg:
                return f"{msg} ({kind})" if kind and isinstance(kind, str) else str(msg)
        elif isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return str(data["message"])
        if isinstance(data.get("detail"), str):
            return str(data["detail"])
    return text[:500]


#: media types that are certainly not an event stream: a JSON or HTML (or XML) document
_NOT_A_STREAM = ("application/json", "text/html", "application/xml", "text/xml", "application/problem+json")


def is_event_stream(content_type: str | None) -> bool:
    """False when a 2xx reply's Content-Type says it is a document, not Server-Sent Events.

    Missing or unusual types count as a stream (some OpenAI-compatible servers omit or
    mislabel it); JSON, HTML and XML do not, so a proxy's or gateway's error page that came
    with 200 is reported with its message instead of as a dropped stream.
    """
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return not (media in _NOT_A_STREAM or media.endswith("+json") or media.endswith("+xml"))


def _html_text(body: bytes) -> str:
    import html
    import re

    text = body.decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
    text = re.sub(r"<(head|script|style)[^>]*>.*?</\1>", " ", text, flags=re.S | re.I)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
    heading = " ".join(html.unescape(title.group(1)).split()) if title else ""
    if heading and text not in heading:
        text = f"{heading}: {text}" if text else heading
    elif heading:
        text = heading
    return text[:300] or "(empty page)"


def not_a_stream_error(provider: str, status: int, content_type: str | None, body: bytes) -> ProviderError:
    """A 2xx reply that is a document instead of a stream, quoting what the server said.

    Not retried: the server answered; resending the same request would get the same page.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    message = _html_text(body) if "html" in media else _error_message(body)
    return ProviderError(
        f"expected an event stream but the server answered {media or 'a document'}: {message}",
        status_code=status,
        provider=provider,
        body=body,
        retryable=False,
    )


def error_from_status(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> LMStreamError:
    """Map an HTTP error reply to RateLimitError / ProviderError / ContextOverflowError with the
    provider's message."""
    message = _error_message(body)
    if 400 <= status < 500:
        try:
            parsed = _json.loads(body)
        except ValueError:
            parsed = None
        overflow = context_overflow(message, parsed, provider, status)
        if overflow is not None:
            return overflow
    retry_after = parse_retry_after(headers)
    if status == 429:
        return RateLimitError(message, status_code=status, provider=provider, body=body, retry_after=retry_after)
    if status in (401, 403):
        message += " — check the API key (it was sent but rejected)"
    return ProviderError(message, status_code=status, provider=provider, body=body, retry_after=retry_after)


def require(module: str, extra: str) -> None:
    """Raise `ConfigurationError` naming the extra to install when `module` cannot be imported.

    Adapters import their HTTP stack or SDK lazily (`import lmstream` stays fast), so without this a
    user who skipped the extra meets a bare `ModuleNotFoundError` from inside the first request.
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"{module} is not installed (the {extra!r} extra brings it); run: pip install 'lmstream[{extra}]'"
        ) from exc


def map_transport_error(provider: str, exc: BaseException, where: str) -> Exception:
    """httpx transport failures -> lmstream errors (retryable; the base decides)."""
    import httpx

    if isinstance(exc, httpx.ReadTimeout):
        return LMTimeoutError(f"{provider}: no data from {where} within the idle timeout", retryable=True)
    if isinstance(exc, httpx.TimeoutException):
        return LMTimeoutError(f"{provider}: timed out talking to {where} ({type(exc).__name__})", retryable=True)
    if isinstance(exc, httpx.ConnectError):
        return ProviderError(f"could not connect to {where}: {exc}", provider=provider, retryable=True)
    return ProviderError(
        f"connection to {where} failed: {type(exc).__name__}: {exc}", provider=provider, retryable=True
    )


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """Parse a Server-Sent Events byte stream into `(event, data)` pairs.

    Handles `\\n`, `\\r\\n` and `\\r` line ends, multi-line `data:`, comments and events split
    across network reads. `event` is b"" when the server named none.
    """
    buf = b""
    event = b""
    data: list[bytes] = []
    skip_lf = False  # the last read ended with \r: a \n opening the next read belongs to it
    async for chunk in chunks:
        if skip_lf and chunk:
            skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if buf:
            buf += chunk
        else:
            buf = chunk
        if b"\r" in buf:
            # (not "wait for more": with CR-only framing the stream's last \r would never end it)
            skip_lf = buf.endswith(b"\r")
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if not line:
                if data:
                    yield event, data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
                event = b""
                continue
            if line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[:6] == b"event:":
                event = line[6:].strip()
            # comments (':'), id:, retry: and unknown fields are ignored, as the spec says
        buf = buf[start:] if start < len(buf) else b""
    # An event not terminated by a blank line at EOF is incomplete: discarded, per the SSE spec.
