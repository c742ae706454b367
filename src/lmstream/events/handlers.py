"""Event handlers: where an emitter's events go (stdout, a console, a user callback)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import IO, Any, cast

from .. import _json
from ..event_values import UsageValue
from .event import Event, EventLevel, EventType

__all__ = ["BaseEventHandler", "CallbackEventHandler", "ConsoleEventHandler", "PrintEventHandler"]


class BaseEventHandler:
    """Receives every event an emitter lets through. Subclass and override `emit`.

    Built-in handlers also implement `emit_nowait` so the emitter can call them without a
    coroutine per token; a subclass that only overrides `emit` is awaited as usual.
    """

    def __init__(self, name: str | None = None, raise_errors: bool = False) -> None:
        self.name = name or type(self).__name__
        self.raise_errors = raise_errors

    async def emit(self, event: Event) -> None:
        self.emit_nowait(event)

    def emit_nowait(self, event: Event) -> None:
        """Synchronous delivery; only called when the handler declares it (built-ins do)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release resources; the emitter calls it from `close()`."""

    @property
    def is_sync(self) -> bool:
        """True when `emit_nowait` may be called instead of awaiting `emit` (no coroutine per event)."""
        cls = type(self)
        return cls.emit is BaseEventHandler.emit and cls.emit_nowait is not BaseEventHandler.emit_nowait


class PrintEventHandler(BaseEventHandler):
    """Plain text, one line per event: timestamp, level, type, value."""

    def __init__(self, name: str | None = None, file: IO[str] | None = None, raise_errors: bool = False) -> None:
        super().__init__(name, raise_errors)
        self._file = file

    def emit_nowait(self, event: Event) -> None:
        out = self._file or sys.stdout
        value = event.value if isinstance(event.value, str) else _json.dumps(event.value)
        out.write(f"{event.timestamp.isoformat()} {EventLevel(event.level).name} {event.type} {value!r}\n")


_COLOURS = {
    EventType.THINKING: "\x1b[2m",
    EventType.THINKING_START: "\x1b[2;3m",
    EventType.THINKING_END: "\x1b[2;3m",
    EventType.TOOL_CALL: "\x1b[36m",
    EventType.TOOL_RESULT: "\x1b[36m",
    EventType.ERROR: "\x1b[31m",
    EventType.DONE: "\x1b[32m",
    EventType.DATA: "\x1b[35m",
}


class ConsoleEventHandler(BaseEventHandler):
    """Human-readable: answer text flows inline, other events on their own coloured line."""

    def __init__(
        self,
        name: str | None = None,
        file: IO[str] | None = None,
        colour: bool | None = None,
        raise_errors: bool = False,
    ) -> None:
        super().__init__(name, raise_errors)
        self._file = file
        self._colour = colour
        self._inline = False  # the cursor is mid-line after response/thinking text

    def emit_nowait(self, event: Event) -> None:
        out = self._file or sys.stdout
        colour = self._colour if self._colour is not None else out.isatty()
        t = event.type
        if t == EventType.RESPONSE or t == EventType.THINKING or t == EventType.CODE:
            text = event.value if isinstance(event.value, str) else _json.dumps(event.value)
            code = _COLOURS.get(t)  # type: ignore[call-overload]
            out.write(f"{code}{text}\x1b[0m" if colour and code else text)
            out.flush()
            self._inline = True
            return
        if self._inline:
            out.write("\n")
            self._inline = False
        value = event.value if isinstance(event.value, str) else _json.dumps(event.value)
        line = f"[{t}] {value}" if value else f"[{t}]"
        if t == EventType.DONE:
            meta = event.metadata
            usage = cast(UsageValue, meta.get("usage") or {})
            line = (
                f"[done] finish_reason={meta.get('finish_reason')} "
                f"in={_count(usage.get('input_tokens'))} out={_count(usage.get('output_tokens'))} "
                f"ttft={_fmt_s(meta.get('time_to_first_token'))} duration={_fmt_s(meta.get('duration'))}"
            )
        code = _COLOURS.get(t)  # type: ignore[call-overload]
        out.write(f"{code}{line}\x1b[0m\n" if colour and code else line + "\n")
        out.flush()


def _fmt_s(v: Any) -> str:
    return f"{v:.3f}s" if isinstance(v, (int, float)) else "-"


class CallbackEventHandler(BaseEventHandler):
    """Calls a user function (sync or async) with each event."""

    def __init__(
        self,
        callback: Callable[[Event], Any],
        name: str | None = None,
        raise_errors: bool = False,
    ) -> None:
        super().__init__(name or getattr(callback, "__name__", None), raise_errors)
        self._callback = callback
        # an object whose __call__ is async counts too (iscoroutinefunction misses it)
        self._async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - the method object itself is wanted
        )

    @property
    def is_sync(self) -> bool:
        return not self._async

    def emit_nowait(self, event: Event) -> None:
        self._callback(event)

    async def emit(self, event: Event) -> None:
        r = self._callback(event)
        if inspect.isawaitable(r):
            await r


def _count(n: Any) -> str:
    """A token count for display; "?" when the provider did not report it."""
    return "?" if n is None else str(n)
