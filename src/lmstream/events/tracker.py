"""Which requests an emitter is watching, so a stream knows when they have all finished."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["RequestTracker", "TrackerListener"]


class TrackerListener(Protocol):
    def request_finished(self, request_id: str, tracker: RequestTracker) -> None: ...


class RequestTracker:
    """Counts the requests an emitter watches, from the call that creates each one to its end.

    A request registers when it is created (`process()` is called), before its task runs, so a
    task cancelled before its first step still ends the streams watching it: its coroutine is
    then closed without running, which `sweep()` notices.
    """

    __slots__ = ("_active", "_listeners", "on_cancelled_before_start")

    def __init__(self) -> None:
        # request_id -> its coroutine while it has not started, else None
        self._active: dict[str, Coroutine[Any, Any, Any] | None] = {}
        self._listeners: list[TrackerListener] = []
        #: called with the request id of a request swept as cancelled before it started
        self.on_cancelled_before_start: Callable[[str], None] | None = None

    def add_listener(self, listener: TrackerListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def register(self, request_id: str, coro: Coroutine[Any, Any, Any] | None = None) -> None:
        """Watch a request; pass its coroutine while it has not started yet."""
        self._active[request_id] = coro

    def started(self, request_id: str) -> None:
        if request_id in self._active:
            self._active[request_id] = None

    def finished(self, request_id: str) -> None:
        """The request ended (any way); listeners learn which, and what is still running."""
        if self._active.pop(request_id, False) is False:
            return
        for listener in self._listeners:
            listener.request_finished(request_id, self)

    def active_ids(self) -> frozenset[str]:
        return frozenset(self._active)

    @property
    def pending(self) -> bool:
        """A registered request has not started yet (its task may be cancelled before it runs)."""
        return any(c is not None for c in self._active.values())

    def sweep(self) -> None:
        """End requests whose coroutine was closed before it ever ran."""
        for request_id, coro in list(self._active.items()):
            if coro is not None and inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED:
                if self.on_cancelled_before_start is not None:
                    self.on_cancelled_before_start(request_id)
                self.finished(request_id)

    def __len__(self) -> int:
        return len(self._active)
