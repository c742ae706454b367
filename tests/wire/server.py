"""A scriptable, fault-injecting HTTP/1.1 server for offline wire-format tests.

Pure stdlib asyncio (``asyncio.start_server``) so every byte on the wire is
ours: the official SDKs and our own clients can be pointed at it through
``base_url`` and fed provider streams, dropped connections and stalls.

Conventions (documented so tests can rely on them):

* One :class:`Script` is consumed per request, in FIFO order.  When the
  queue is empty the server answers ``500`` with an OpenAI-shaped JSON error
  body, unless it was built with ``repeat_last=True`` (then the last served
  script is replayed).  A 500 from an empty queue is loud on purpose: a test
  that made more requests than it scripted should fail visibly.
* Every response carries ``Connection: close`` and the socket is closed after
  it, so one request == one TCP connection.  This keeps disconnect accounting
  unambiguous and means a non-chunked stream is delimited by the close.
* Every loop is bounded in count and time (header size, body size, stall
  time, per-chunk delay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["RecordedRequest", "Script", "WireServer"]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
HEADER_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 10.0
STALL_MAX_S = 30.0
MAX_DELAY_S = 30.0
MAX_CHUNKS = 100_000

_EXTRA_REASONS = {529: "Site Overloaded"}


@dataclass
class Script:
    """One scripted HTTP response, with optional faults.

    ``chunks`` are written one ``write()`` + ``drain()`` each (with
    ``delay_between`` seconds before every chunk after the first) so the
    client sees them arrive separately, as on a real network.  Empty chunks
    are skipped: in chunked encoding a zero-length chunk would end the body.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: Non-streaming body (e.g. a JSON error); dict/list is JSON-encoded.
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    #: Streaming body pieces; each goes out in its own write()+drain().
    chunks: list[bytes] = field(default_factory=list)
    #: Seconds to wait before each chunk after the first (clamped to 30 s).
    delay_between: float = 0.0
    #: Seconds to wait after the headers, before the first chunk.
    delay_first: float = 0.0
    #: After writing this many chunks, close the socket abruptly: no final
    #: ``0\r\n\r\n`` chunk, so the client sees an incomplete body.
    drop_after: int | None = None
    #: With ``drop_after``: send a TCP RST (SO_LINGER 0) instead of a FIN.
    reset: bool = False
    #: After writing this many chunks, go silent but keep the socket open
    #: until the client disconnects or ``stall_max`` seconds pass.
    stall_after: int | None = None
    stall_max: float = STALL_MAX_S
    #: Raw bytes injected as an extra chunk before chunk ``garbage_at``
    #: (``None`` index = after the last chunk).
    garbage: bytes = b""
    garbage_at: int | None = 0
    #: ``None`` = chunked when ``chunks`` is set, Content-Length otherwise.
    chunked: bool | None = None
    #: Content-Type; ``None`` = text/event-stream for chunks, JSON for body.
    content_type: str | None = None

    @classmethod
    def document(cls, kind: str = "json", message: str = "The model is overloaded") -> Script:
        """200 OK whose body is a JSON or HTML document where an event stream was expected.

        What an overloaded OpenAI-compatible server or a gateway's error page sends:
        ``kind="json"`` is ``{"error": {"message": ...}}`` as application/json, ``kind="html"``
        a small error page as text/html. Clients must report ``message``, not a dropped stream.
        """
        if kind == "json":
            return cls(status=200, body={"error": {"message": message, "type": "server_error"}})
        if kind == "html":
            page = f"<html><head><title>{message}</title></head><body><h1>{message}</h1></body></html>"
            return cls(status=200, body=page, content_type="text/html; charset=utf-8")
        raise ValueError(f"unknown document kind {kind!r}; use 'json' or 'html'")

    def body_bytes(self) -> bytes:
        """The non-streaming body encoded to bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()

    def pieces(self) -> list[bytes]:
        """The chunks to write, with ``garbage`` spliced in, empties removed."""
        out = [c for c in self.chunks if c]
        if self.garbage:
            at = len(out) if self.garbage_at is None else max(0, self.garbage_at)
            out.insert(min(at, len(out)), self.garbage)
        return out[:MAX_CHUNKS]


@dataclass
class RecordedRequest:
    """What the server saw for one request, plus how the response went."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    #: Body pieces (chunks, or 1 for a plain body) actually written.
    chunks_written: int = 0
    #: The client closed the connection before the response was complete.
    disconnected: bool = False
    #: The full response, including the final chunk, was written.
    completed: bool = False
    #: How the response ended: "complete", "dropped", "stalled-timeout",
    #: "client-closed", "error".
    outcome: str = ""


class WireServer:
    """Scriptable local HTTP/1.1 server bound to 127.0.0.1.

    Use ``async with WireServer() as srv`` inside an event loop, or
    ``srv.start_in_thread()`` / ``srv.stop()`` from synchronous code.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        repeat_last: bool = False,
        responder: Callable[[RecordedRequest], Script] | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("WireServer only binds loopback")
        self.host = "127.0.0.1"
        self.port = port
        self.repeat_last = repeat_last
        #: when set, answers each request by what it asked (a stateful replay: batch APIs,
        #: per-prompt answers) instead of the FIFO queue
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self._queue: deque[Script] = deque()
        self._lock = threading.Lock()
        self._last: Script | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ API
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash, no version prefix)."""
        return f"http://{self.host}:{self.port}"

    def enqueue(self, *scripts: Script) -> WireServer:
        """Queue responses; served one per request, in order."""
        with self._lock:
            self._queue.extend(scripts)
        return self

    @property
    def pending(self) -> int:
        """Scripts not yet consumed."""
        with self._lock:
            return len(self._queue)

    @property
    def paths(self) -> list[str]:
        """Request paths seen so far, in order."""
        return [r.path for r in self.requests]

    async def start(self) -> None:
        """Bind and start serving on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, cancel live connections (bounded), close."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conn_tasks):
            task.cancel()
        if self._conn_tasks:
            await asyncio.wait(self._conn_tasks, timeout=2.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def __aenter__(self) -> WireServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start_in_thread(self, timeout: float = 5.0) -> WireServer:
        """Run the server on its own loop in a daemon thread (for sync tests)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.close())
                loop.close()

        self._thread = threading.Thread(target=run, name="WireServer", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("WireServer did not start")
        if errors:
            raise errors[0]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> WireServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def wait_for(self, predicate: Callable[[WireServer], bool], timeout: float = 2.0) -> bool:
        """Wait (bounded) until ``predicate(self)`` holds; for async tests."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.02, left))
        return True

    def wait_for_sync(self, predicate: Callable[[WireServer], bool], timeout: float = 2.0) -> bool:
        """Thread-mode twin of :meth:`wait_for`."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------ internals
    def _next_script(self) -> Script:
        with self._lock:
            if self._queue:
                self._last = self._queue.popleft()
                return self._last
            if self.repeat_last and self._last is not None:
                return self._last
        return Script(
            status=500,
            body={
                "error": {
                    "message": "WireServer: no script queued for this request",
                    "type": "server_error",
                    "param": None,
                    "code": "wire_no_script",
                }
            },
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._conn_tasks.discard(task)
            if not writer.is_closing():
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await asyncio.wait_for(self._read_chunked(reader), BODY_TIMEOUT_S)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n > MAX_BODY_BYTES:
                raise ConnectionError("request body too large")
            body = await asyncio.wait_for(reader.readexactly(n), BODY_TIMEOUT_S)
        split = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        return RecordedRequest(method, target, split.path, query, headers, body, parsed)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        out = bytearray()
        for _ in range(MAX_CHUNKS):
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # trailer end (no trailers)
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readexactly(2)
            if len(out) > MAX_BODY_BYTES:
                raise ConnectionError("request body too large")
        raise ConnectionError("too many request chunks")

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await self._read_request(reader)
        if req is None:
            return
        self.requests.append(req)
        script = self.responder(req) if self.responder is not None else self._next_script()

        # Watch for the client closing its side; EOF after a complete request
        # means the client went away (httpx never half-closes).
        closed = asyncio.Event()

        async def watch_eof() -> None:
            with contextlib.suppress(Exception):
                while await reader.read(4096):
                    pass
            closed.set()

        watcher = asyncio.ensure_future(watch_eof())
        try:
            await self._respond(req, script, writer, closed)
        finally:
            watcher.cancel()
            with contextlib.suppress(BaseException):
                await watcher

    async def _pause(self, seconds: float, closed: asyncio.Event) -> bool:
        """Sleep up to ``seconds`` (clamped); True if the client closed."""
        seconds = max(0.0, min(seconds, MAX_DELAY_S))
        if closed.is_set():
            return True
        if seconds == 0:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(closed.wait(), seconds)
        return closed.is_set()

    def _mark_disconnect(self, req: RecordedRequest) -> None:
        if not req.disconnected:
            req.disconnected = True
            req.outcome = "client-closed"
            self.disconnects += 1

    async def _respond(
        self, req: RecordedRequest, script: Script, writer: asyncio.StreamWriter, closed: asyncio.Event
    ) -> None:
        streaming = bool(script.chunks) or bool(script.garbage)
        chunked = script.chunked if script.chunked is not None else streaming
        ctype = script.content_type or (_stream_type(script.chunks) if streaming else "application/json")
        try:
            reason = http.HTTPStatus(script.status).phrase
        except ValueError:
            reason = _EXTRA_REASONS.get(script.status, "Unknown")
        pieces = script.pieces() if streaming else ([script.body_bytes()] if script.body is not None else [])
        hdrs: dict[str, str] = {"Content-Type": ctype, "Connection": "close"}
        if streaming:
            hdrs["Cache-Control"] = "no-cache"
        if chunked:
            hdrs["Transfer-Encoding"] = "chunked"
        elif not streaming:
            hdrs["Content-Length"] = str(sum(len(p) for p in pieces))
        hdrs.update(script.headers)
        head = f"HTTP/1.1 {script.status} {reason}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"

        try:
            writer.write(head.encode("latin-1"))
            await writer.drain()
            if await self._pause(script.delay_first, closed):
                self._mark_disconnect(req)
                return
            for i, piece in enumerate(pieces):
                if script.drop_after is not None and i >= script.drop_after:
                    req.outcome = "dropped"
                    self._abort(writer, script.reset)
                    return
                if script.stall_after is not None and i >= script.stall_after:
                    await self._stall(req, script, closed)
                    return
                if i > 0 and await self._pause(script.delay_between, closed):
                    self._mark_disconnect(req)
                    return
                if closed.is_set():
                    self._mark_disconnect(req)
                    return
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
                req.chunks_written += 1
            if script.drop_after is not None and script.drop_after <= len(pieces):
                req.outcome = "dropped"
                self._abort(writer, script.reset)
                return
            if script.stall_after is not None:
                await self._stall(req, script, closed)
                return
            if chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            req.completed = True
            req.outcome = "complete"
        except (ConnectionError, OSError):
            self._mark_disconnect(req)

    async def _stall(self, req: RecordedRequest, script: Script, closed: asyncio.Event) -> None:
        deadline = min(script.stall_max, STALL_MAX_S)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(closed.wait(), deadline)
        if closed.is_set():
            self._mark_disconnect(req)
        else:
            req.outcome = "stalled-timeout"

    @staticmethod
    def _abort(writer: asyncio.StreamWriter, reset: bool) -> None:
        sock = writer.get_extra_info("socket")
        if reset and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


def _stream_type(chunks: list[bytes]) -> str:
    """`application/vnd.amazon.eventstream` when the body opens with a valid event-stream prelude
    (its CRC32 matches), else `text/event-stream`."""
    import binascii

    first = chunks[0] if chunks else b""
    if len(first) >= 12 and struct.unpack(">I", first[8:12])[0] == binascii.crc32(first[:8]) & 0xFFFFFFFF:
        return "application/vnd.amazon.eventstream"
    return "text/event-stream"


def _main() -> None:
    """``python -m tests.wire.server --port N --fixture NAME``: serve forever."""
    from tests.wire import fixtures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--fixture", default="openai_chat_text", help="builder name in tests.wire.fixtures")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds between chunks")
    args = ap.parse_args()
    chunks = getattr(fixtures, args.fixture)()

    async def serve() -> None:
        srv = WireServer(port=args.port, repeat_last=True)
        srv.enqueue(Script(chunks=chunks, delay_between=args.delay))
        async with srv:
            print(f"serving {args.fixture} on {srv.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    _main()
