"""Running the app under uvicorn with bounds on connections and on the time to send a request.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not the time a client
takes to send its headers (and its `limit_concurrency` counts idle sockets, so idle sockets lock
everyone out: not used here; `with_read_timeout` keeps the cap on connections itself): a
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


class _Connections:
    """The connections of one server, oldest first, for the cap on connections."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.open: dict[Any, None] = {}  # insertion-ordered: the oldest first
        self.evicted = 0  #: idle connections closed to let a newer one in (for tests and /healthz)
        self.refused = 0  #: connections closed at once: every open one was busy


def with_read_timeout(protocol: type[Any], read_timeout: float | None, max_connections: int | None = None) -> type[Any]:
    """A subclass of uvicorn's HTTP `protocol` class that closes a connection whose request headers
    take longer than `read_timeout` seconds (from the connection, or from the request's first byte),
    and keeps at most `max_connections` open: past it, the oldest connection that is waiting for a
    request (it sent nothing, or is idle between requests) is closed to let the new one in, so idle
    sockets can never lock out requests or health checks. A connection that is cut off (the server
    closes it while its client is not reading) is aborted, not left holding its buffers."""
    connections = _Connections(max_connections)

    class ReadTimeoutProtocol(protocol):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _timed_cycle: Any = None
        lmstream_connections = connections

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._abort_when_stuck(transport)
            if connections.limit is not None and len(connections.open) >= connections.limit:
                victim = next((c for c in connections.open if c._waiting_for_headers()), None)
                if victim is None:  # every connection is busy with a request: refuse this one
                    connections.refused += 1
                    transport.abort()
                    return
                connections.evicted += 1
                victim._evict()
            connections.open[self] = None
            if read_timeout is not None:
                self._start_header_timer()

        def _abort_when_stuck(self, transport: Any) -> None:
            close = transport.close

            def close_or_abort() -> None:  # a client that stopped reading would keep the socket forever
                flow = getattr(self, "flow", None)
                if flow is not None and getattr(flow, "write_paused", False) and transport.get_write_buffer_size():
                    transport.abort()
                else:
                    close()

            try:
                transport.close = close_or_abort
            except AttributeError:  # pragma: no cover - a transport without an instance dict
                pass

        def _evict(self) -> None:
            connections.open.pop(self, None)
            self._stop_header_timer()
            transport = getattr(self, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_for_headers()
            super().data_received(data)
            if read_timeout is None:
                return
            if not self._waiting_for_headers():
                self._stop_header_timer()  # the headers are in: the app takes over
            elif waiting and self._header_timer is None:
                self._start_header_timer()  # the first byte of a new request

        def connection_lost(self, exc: Exception | None) -> None:
            connections.open.pop(self, None)
            self._stop_header_timer()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle is self._timed_cycle or bool(getattr(cycle, "response_complete", False))

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._timed_cycle = getattr(self, "cycle", None)
            assert read_timeout is not None
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

    # uvicorn's own `limit_concurrency` counts connections that never sent a byte: a few hundred
    # idle sockets would make it answer 503 to every request and health check. The protocol keeps
    # the cap instead, closing the oldest idle connection for a new one (streams are bounded by
    # the app's own slots).
    http: Any = with_read_timeout(AutoHTTPProtocol, read_timeout, max_connections)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        timeout_keep_alive=keep_alive,
        **kwargs,
    )
