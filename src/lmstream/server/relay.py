"""An SSE response that notices a client leaving at once and keeps idle streams alive.

Starlette's `StreamingResponse` learns of a disconnect by cancelling the body iterator, and an
`await` in that cancelled frame does not run, which is how upstream sockets get left open. This
response instead watches `receive()` for `http.disconnect` in a side task and calls a plain
function (`on_disconnect`, which cancels the request's task), so the body iterator then ends
normally and its cleanup runs in a frame that is not cancelled. A second side task sends a
comment line when nothing was sent for `heartbeat` seconds, so proxies keep idle streams open.

A response whose frames do not stop by themselves when the client leaves (a detached answer
followed from a store: `on_disconnect=None`) has its reading cancelled instead and returns at
once, so a client that left never keeps a response waiting on the store. Only a failed `send()`
counts as the client leaving: a `ConnectionError` raised by the frames themselves (a store that
failed) is the server's failure, which the frames end with an error chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from ..protocols.sse import PING, SSE_HEADERS

__all__ = ["SSE_HEADERS", "SSEResponse"]

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


#: relays cancelled because their client left, still unwinding (kept here so they are not collected)
_ABANDONED: set[asyncio.Task[None]] = set()


def _forget_abandoned(task: asyncio.Task[None]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a failure after the client left is nobody's to see


class SSEResponse:
    """ASGI response streaming `frames` (already framed SSE bytes)."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        on_disconnect: Callable[[], None] | None,
        heartbeat: float,
        headers: Mapping[str, str] | None = None,
        on_end: Callable[[], Any] | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.frames = frames
        self.write_timeout = write_timeout
        self.on_disconnect = on_disconnect
        self.heartbeat = heartbeat
        self.headers = {**SSE_HEADERS, **(headers or {})}
        self.on_end = on_end
        self.disconnected = False
        self.timed_out = False  #: a write waited longer than `write_timeout`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One writer at a time without a lock on the hot path: the heartbeat skips its turn while
        # a frame is being written, and a frame waits for a heartbeat being written.
        sending = False
        pinging: asyncio.Future[None] | None = None
        last_sent = time.monotonic()
        pump: asyncio.Task[None] | None = None

        def left() -> None:
            if not self.disconnected:
                self.disconnected = True
                if self.on_disconnect is not None:
                    self.on_disconnect()
                elif pump is not None and pump is not asyncio.current_task():
                    pump.cancel()  # stop reading: nobody is there to read for

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    left()
                    return

        async def ping() -> None:
            nonlocal last_sent, pinging
            while not self.disconnected:
                await asyncio.sleep(max(0.0, last_sent + self.heartbeat - time.monotonic()))
                if time.monotonic() - last_sent >= self.heartbeat and not self.disconnected and not sending:
                    pinging = asyncio.get_running_loop().create_future()
                    try:
                        async with asyncio.timeout(self.write_timeout):
                            await send({"type": "http.response.body", "body": PING, "more_body": True})
                    except (OSError, TimeoutError):
                        left()
                        return
                    finally:
                        pinging.set_result(None)
                        pinging = None
                    last_sent = time.monotonic()

        async def write(message: dict[str, Any]) -> bool:
            """Send one message; False when the client went away (uvicorn's ClientDisconnected), or
            did not take it within `write_timeout` (it stopped reading: it is cut off, the
            response ends unfinished and the server closes the connection)."""
            try:
                if self.write_timeout is None:
                    await send(message)
                else:
                    async with asyncio.timeout(self.write_timeout):
                        await send(message)
            except OSError:
                left()
                return False
            except TimeoutError:
                self.timed_out = True
                left()
                return False
            return True

        frames: AsyncIterator[bytes] | None = self.frames

        async def relay() -> None:
            try:
                await relay_frames()
            finally:
                if self.disconnected and self.on_disconnect is None:
                    aclose = getattr(self.frames, "aclose", None)
                    if aclose is not None:
                        await aclose()  # abandoned: the frames' cleanup runs here, once they stop

        async def relay_frames() -> None:
            nonlocal sending, last_sent
            async for frame in self.frames:
                if self.disconnected:
                    break
                if pinging is not None:
                    await pinging
                sending = True
                ok = await write({"type": "http.response.body", "body": frame, "more_body": True})
                sending = False
                if not ok:
                    break
                last_sent = time.monotonic()
            if not self.disconnected:
                if pinging is not None:
                    await pinging
                await write({"type": "http.response.body", "body": b"", "more_body": False})

        watcher = asyncio.create_task(watch())
        pinger = asyncio.create_task(ping()) if self.heartbeat > 0 else None
        try:
            start = {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in self.headers.items()],
            }
            if await write(start):
                if self.on_disconnect is not None:
                    await relay()
                else:
                    pump = asyncio.create_task(relay())
                    await asyncio.wait([pump, watcher], return_when=asyncio.FIRST_COMPLETED)
                    if not pump.done():  # the client left: do not wait for a store to notice
                        _ABANDONED.add(pump)
                        pump.add_done_callback(_forget_abandoned)
                        frames = None  # still being read: the pump closes it when it ends
                    elif not pump.cancelled() and (failure := pump.exception()) is not None:
                        raise failure
        finally:
            # Plain calls first: they take effect even if this frame is being cancelled.
            watcher.cancel()
            if pinger is not None:
                pinger.cancel()
            if self.on_end is not None:
                self.on_end()
            aclose = getattr(frames, "aclose", None) if frames is not None else None
            if aclose is not None:
                await aclose()  # the frames' own cleanup, in a frame that is not cancelled
            await asyncio.wait([t for t in (watcher, pinger) if t is not None])
