"""Running the app under uvicorn with bounds on connections and on the time to send a request.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and the connections it takes
(`limit_concurrency`, 503 past it), but not the time a client takes to send its headers: a
client trickling one header byte at a time holds a connection (and a file descriptor) as long as
it likes, before any key is checked. `with_read_timeout` adds that bound to uvicorn's HTTP
protocol: a request whose headers have not all arrived `read_timeout` seconds after its first
byte (or after the connection opened) gets a 408 and the connection is closed. The body's time
is bounded where it is read (`bodies.read_json`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["uvicorn_config", "with_read_timeout"]

_TIMEOUT_BODY = b'{"error":{"message":"the request headers did not arrive in time","type":"request_timeout"}}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + f"content-length: {len(_TIMEOUT_BODY)}\r\n\r\n".encode()
    + _TIMEOUT_BODY
)


def with_read_timeout(protocol: type[Any], read_timeout: float) -> type[Any]:
    """A subclass of uvicorn's HTTP `protocol` class that closes a connection whose request headers
    take longer than `read_timeout` seconds (from the connection, or from the request's first byte)."""

    class ReadTimeoutProtocol(protocol):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _timed_cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            super().data_received(data)
            if not self._waiting_for_headers():
                self._stop_header_timer()  # the headers are in: the app takes over
            elif waiting and self._header_timer is None:
                self._start_header_timer()  # the first byte of a new request

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle is self._timed_cycle or bool(getattr(cycle, "response_complete", False))

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._timed_cycle = getattr(self, "cycle", None)
            self._header_timer = asyncio.get_running_loop().call_later(read_timeout, self._headers_too_slow)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            transport = getattr(self, "transport", None)
            if transport is None or transport.is_closing() or not self._waiting_for_headers():
                return
            transport.write(_TIMEOUT_RESPONSE)
            transport.close()

    ReadTimeoutProtocol.__name__ = ReadTimeoutProtocol.__qualname__ = f"ReadTimeout{protocol.__name__}"
    return ReadTimeoutProtocol


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    read_timeout: float | None,
    max_connections: int | None,
    keep_alive: int = 5,
    **kwargs: Any,
) -> Any:
    """The `uvicorn.Config` `lmstream serve` runs: connections bounded in number and in the time
    their headers take, idle keep-alive connections closed after `keep_alive` seconds."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    http: Any = AutoHTTPProtocol if read_timeout is None else with_read_timeout(AutoHTTPProtocol, read_timeout)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        limit_concurrency=max_connections,
        timeout_keep_alive=keep_alive,
        **kwargs,
    )
