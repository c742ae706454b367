"""One request running for one HTTP response, behind the smallest seam the server needs.

`start_request` is the only place that knows how a request is started (`processor.stream(...)`,
a `RequestStream`); the server only iterates `events()` and calls `cancel()`, `pending()` and
`aclose()`.
"""

from __future__ import annotations

from typing import Any

from ..engine.request_stream import RequestStream
from ..events import Event, EventType
from ..processor import LMRequestProcessor

__all__ = ["SHUTDOWN_ERROR", "SHUTDOWN_MESSAGE", "RunningRequest", "start_request"]

#: what a running answer's stream says when the server stops under it (Ctrl-C, SIGTERM)
SHUTDOWN_MESSAGE = "the server is shutting down"
SHUTDOWN_ERROR = "ServerShutdown"


class RunningRequest:
    """A request and its event stream. `cancel()` is synchronous on purpose: it is safe to call
    from a frame that is itself being cancelled (a client that left), where an `await` would not
    run and the provider connection would be left open."""

    __slots__ = ("ending", "stream")

    def __init__(self, stream: RequestStream[Any]) -> None:
        self.stream = stream
        self.ending: str | None = None  # set by `end()`: why the server ended it

    def end(self, reason: str = SHUTDOWN_MESSAGE) -> None:
        """Stop the request because the server is going away: its stream then ends with an
        `error` saying `reason` (see `terminal`), not with the `abort` of a user's stop."""
        self.ending = reason
        self.stream.cancel()

    def terminal(self, ev: Event) -> Event:
        """`ev`, or, for the last event of a request the server ended, the error saying why."""
        if self.ending is None or ev.type != EventType.ERROR:
            return ev
        return Event(self.ending, ev.type, ev.level, {**ev.metadata, "error_type": SHUTDOWN_ERROR})

    @property
    def request_id(self) -> str:
        return self.stream.request_id

    def events(self) -> RequestStream[Any]:
        """This request's events in order; after a failure's `error` event it raises the request's
        exception (callers stop there: the event already said it)."""
        return self.stream

    def pending(self) -> int:
        """Events already waiting: the next `events()` step returns without waiting."""
        return len(self.stream)

    def cancel(self) -> None:
        """Stop the request now: the provider connection is closed as its task unwinds."""
        self.stream.cancel()

    async def aclose(self) -> None:
        """Cancel if still running and wait for the request to unwind."""
        await self.stream.aclose()


def start_request(processor: LMRequestProcessor[Any], **kwargs: Any) -> RunningRequest:
    """Start `processor` on one request (`prompt_kwargs`, `history`, ... as for `stream()`)."""
    return RunningRequest(processor.stream(**kwargs))
