"""Typed events and the emitter that fans them out to handlers while a request runs.

The event path is the hot loop of the library: one `Event` per streamed token, dispatched to
synchronous built-in handlers without a coroutine per token.

Modules: `event` (`Event`), `emitter` (`EventEmitter`: fans events out to handlers), `handlers`
(print, console, callback), `stream` (`StreamEventHandler`, the bounded buffer behind
`stream()`), `tracker` (which requests an emitter watches, so a stream knows when all ended).
"""

from .emitter import EventEmitter, Hook
from .event import Event, EventLevel, EventType
from .handlers import BaseEventHandler, CallbackEventHandler, ConsoleEventHandler, PrintEventHandler
from .stream import StreamEventHandler
from .tracker import RequestTracker

__all__ = [
    "Event",
    "EventLevel",
    "EventType",
    "EventEmitter",
    "Hook",
    "BaseEventHandler",
    "StreamEventHandler",
    "PrintEventHandler",
    "ConsoleEventHandler",
    "CallbackEventHandler",
    "RequestTracker",
]
