"""Synchronous calls: `lmrp.process_sync(...)`, `with lmrp.stream_sync(...) as s: for event in s`.

They run on lmstream's own event loop, in one background thread per process, started on first
use. So they work where a loop is already running (Jupyter, IPython, a FastAPI sync route), and
from many threads at once. A sync stream is a real stream: each event reaches the caller's thread
as the model produces it (events already waiting cross in one hop). Ctrl-C while waiting, leaving
the `with` block, or `close()` cancel the request as the async stream does: the provider
connection is closed and local generation stops. Errors are the request's own typed exceptions,
raised in the caller's thread.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import LMStreamError
from .types import EventType

if TYPE_CHECKING:
    from .engine.request_stream import RequestStream
    from .events import Event

__all__ = ["SyncRequestStream", "loop_thread_running", "run_sync"]

T = TypeVar("T")

#: how long leaving a stream (or Ctrl-C) waits for the request to unwind and close its connection
CANCEL_WAIT_S = 10.0


class _LoopThread:
    """The process's one background event loop (recreated in a forked child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == os.getpid() and loop.is_running():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not self._loop.is_running():
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                _cancel_all(loop)
                loop.close()

        thread = threading.Thread(target=run, name="lmstream-sync-loop", daemon=True)
        thread.start()
        if not ready.wait(10.0):
            raise LMStreamError("lmstream's background event loop did not start")
        self._loop, self._thread, self._pid = loop, thread, os.getpid()

    def is_current(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def running(self) -> bool:
        return self._loop is not None and self._pid == os.getpid() and self._loop.is_running()

    def stop(self) -> None:
        """At interpreter exit: cancel what still runs and stop the loop (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._pid != os.getpid() or not loop.is_running():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(2.0)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for t in tasks:
        t.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))


_LOOP = _LoopThread()
atexit.register(_LOOP.stop)


def loop_thread_running() -> bool:
    """Whether the background loop has been started in this process (for tests and diagnostics)."""
    return _LOOP.running


class _Call(Generic[T]):
    """One coroutine run on the background loop, waited for from the calling thread."""

    __slots__ = ("_done", "_error", "_loop", "_result", "_task")

    def __init__(self, make: Callable[[], Coroutine[Any, Any, T]]) -> None:
        if _LOOP.is_current():
            raise LMStreamError(
                "a *_sync() call was made from lmstream's own loop thread (inside a handler or tool?): "
                "it would wait for itself; use the async call there (await process(...))"
            )
        self._loop = _LOOP.get()
        self._done = threading.Event()
        self._task: asyncio.Task[T] | None = None
        self._result: T | None = None
        self._error: BaseException | None = None
        self._loop.call_soon_threadsafe(self._start, make)

    def _start(self, make: Callable[[], Coroutine[Any, Any, T]]) -> None:
        try:
            task = self._task = asyncio.ensure_future(make())
        except BaseException as exc:  # building the request failed: raise it in the caller's thread
            self._error = exc
            self._done.set()
            return
        task.add_done_callback(self._finish)

    def _finish(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self._error = LMStreamError("the request was cancelled before it finished")
        elif (exc := task.exception()) is not None:
            self._error = exc
        else:
            self._result = task.result()
        self._done.set()

    def wait(self) -> T:
        try:
            self._done.wait()  # Ctrl-C interrupts this wait on the main thread
        except BaseException:
            self.cancel()
            raise
        if self._error is not None:
            raise self._error.with_traceback(self._error.__traceback__)
        return self._result  # type: ignore[return-value]

    def cancel(self) -> None:
        """Cancel the coroutine and wait (bounded) until it has unwound."""
        with contextlib.suppress(RuntimeError):  # the loop is gone (interpreter exit)
            self._loop.call_soon_threadsafe(self._cancel)
        self._done.wait(CANCEL_WAIT_S)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` builds on the background loop and return its result here.

    The coroutine is built on the loop's thread (a request registers with its emitter there)."""
    return _Call(make).wait()


class SyncRequestStream(Generic[T]):
    """A `RequestStream` for synchronous code: `with lmrp.stream_sync(...) as s: for event in s`.

    The request starts on entering the block (or on first iteration); `result()` gives its output
    (the parser's value when the processor has one); `text()` iterates the answer's text deltas.
    On failure the `error` event is yielded, then the request's typed exception is raised.
    """

    def __init__(self, make: Callable[[], RequestStream[T]]) -> None:
        self._make = make
        self._stream: RequestStream[T] | None = None
        self._buffer: collections.deque[Event] = collections.deque()
        self._ended = False
        self._failure: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()  # one reader at a time: a second thread waits its turn

    def _open(self) -> RequestStream[T]:
        if self._stream is None:
            if self._closed:
                raise LMStreamError("this stream was closed before it started")

            async def start() -> RequestStream[T]:
                stream = self._make()
                await stream.__aenter__()
                return stream

            self._stream = run_sync(start)
        return self._stream

    @property
    def request_id(self) -> str:
        return self._open().request_id

    def __enter__(self) -> SyncRequestStream[T]:
        self._open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        with self._lock:
            if self._buffer:
                return self._buffer.popleft()
            if self._failure is not None:
                exc, self._failure = self._failure, None
                raise exc
            if self._ended:
                raise StopIteration
            stream = self._open()
            try:
                batch, self._failure = run_sync(lambda: _next_events(stream))
            except BaseException as exc:
                self._ended = True
                if not isinstance(exc, LMStreamError):  # Ctrl-C or the like: the request must not go on
                    self._close()
                raise
            if self._failure is not None:
                self._ended = True
            if not batch:
                self._ended = True
                raise StopIteration
            self._buffer.extend(batch[1:])
            return batch[0]

    def text(self) -> Iterator[str]:
        """The answer's text deltas only."""
        for event in self:
            if event.type == EventType.RESPONSE and isinstance(event.value, str):
                yield event.value

    def result(self) -> T:
        """The request's output; waits for it to finish."""
        stream = self._open()
        return run_sync(stream.result)

    def close(self) -> None:
        """Stop reading; a request still running is cancelled and waited for (connection closed)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ended = True
        stream = self._stream
        if stream is not None:
            run_sync(stream.aclose)

    def __del__(self) -> None:
        # Dropped without close() (a `for` loop left early without `with`): cancel, do not wait.
        stream = self._stream
        if stream is not None and not self._closed and _LOOP.running:
            with contextlib.suppress(Exception):
                _LOOP.get().call_soon_threadsafe(stream.cancel)

    def __repr__(self) -> str:
        return f"SyncRequestStream({self._stream!r})"


async def _next_events(stream: RequestStream[Any]) -> tuple[list[Event], BaseException | None]:
    """The next event, plus every event already waiting behind it (one thread hop for all), and
    the request's exception when the stream ended with one after them (raised once they are read)."""
    try:
        out = [await stream.__anext__()]
    except StopAsyncIteration:
        return [], None
    while len(stream):
        try:
            out.append(await stream.__anext__())
        except StopAsyncIteration:
            break
        except Exception as exc:
            return out, exc
    return out, None
