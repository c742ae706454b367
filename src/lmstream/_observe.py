"""The observer seam: where the core reports requests, model calls, retries and tool runs.

The core calls `current()` once per request, per model call and per tool call (never per
token) and, when it returns an observer, reports start and end through the handles it gets
back. Without `opentelemetry-api` installed, or with no tracer or meter provider configured,
`current()` returns None and the core does nothing more. This module imports no
OpenTelemetry code; `lmstream.otel` holds all of it and is imported only when the API is
installed. The arrow runs one way: the core imports this seam, this seam loads `lmstream.otel`
on first use, and the tracing modules (`otel`, `_otel_spans`, `_otel_content`) import neither
this seam nor anything above the data types they read (`types`, `prompt`, `errors`).

Call sites (each marked "observability seam" in the code):
* `engine/lifecycle.run_request(ctx, work, kind)`: `request_started` / `end` around the
  request (`kind` "process" or "stream"; None for a standalone `invoke()`: no parent span);
* `engine/call.call_model`: `call_started` / `end` around one model call (its `params`, a
  `CallParams`, carry the call's tools and schema), the total timeout included;
  `engine.attempts`: `attempt(acc)` per attempt, `retry(...)` before a retry's back-off;
* `tools.execute_tool_calls`: `tool_started` / `end` around each tool run.
Every `end()` runs in the task that made the matching start (the span is the task's current
OpenTelemetry context in between, so spans nest by themselves).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .prompt import Message
    from .types import LMOutput, ToolCall

__all__ = ["CallHandle", "Observer", "SpanHandle", "current", "remote_parent", "set_observer", "trace_headers"]


class SpanHandle(Protocol):
    """A started request or tool span; `end()` must run in the task that started it."""

    def end(self, result: Any, exc: BaseException | None) -> None: ...


class CallHandle(Protocol):
    """A started model call (one `invoke()`, all its attempts)."""

    def attempt(self, acc: Any) -> None:
        """The accumulator of the attempt now running: the first-chunk time and the chunk
        count are read from it once, when the call ends (nothing is done per chunk)."""

    def retry(self, attempt: int, exc: BaseException, delay: float) -> None: ...

    def end(self, output: LMOutput | None, exc: BaseException | None) -> None: ...


class DescribedTool(Protocol):
    """What an observer reads of a `lmstream.tools.Tool` (the seam imports nothing above it)."""

    @property
    def description(self) -> str: ...


class Observer(Protocol):
    def active(self) -> bool:
        """Whether a provider is configured now (checked once per request, cheaply)."""

    def request_started(self, request_id: str, kind: str) -> SpanHandle: ...

    def call_started(
        self, invoker: Any, messages: Sequence[Message], params: Mapping[str, Any], request_id: str | None
    ) -> CallHandle: ...

    def tool_started(self, call: ToolCall, tool: DescribedTool | None) -> SpanHandle: ...


_observer: Observer | None = None
_unavailable = False


def current() -> Observer | None:
    """The active observer, or None (the common case, and then the core does nothing)."""
    global _observer, _unavailable
    obs = _observer
    if obs is None:
        if _unavailable:
            return None
        mods, env = sys.modules, os.environ
        if (
            "opentelemetry.trace" not in mods
            and "opentelemetry.metrics" not in mods
            and "OTEL_PYTHON_TRACER_PROVIDER" not in env
            and "OTEL_PYTHON_METER_PROVIDER" not in env
        ):
            return None  # nothing imported OpenTelemetry, so nothing configured it: stay import-free
        try:
            from . import otel
        except ImportError:  # opentelemetry-api is not installed: checked once per process
            _unavailable = True
            return None
        obs = _observer = otel.observer()
    try:
        return obs if obs.active() else None
    except Exception:  # e.g. an OpenTelemetry API too old for lmstream.otel: never break a request
        logging.getLogger("lmstream.otel").warning("lmstream.otel: tracing disabled", exc_info=True)
        _observer, _unavailable = None, True
        return None


def set_observer(observer: Observer | None) -> None:
    """Install another observer (None: back to the OpenTelemetry one, found on next use).
    `lmstream.otel.configure()` needs no call here: it configures the observer found here."""
    global _observer, _unavailable
    _observer = observer
    _unavailable = False


def remote_parent(headers: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
    """Serve one incoming HTTP request under the trace context its headers carry (W3C
    `traceparent`): start the request (or create its task) inside the `with` block and its
    spans join the caller's trace. A no-op when tracing is off."""
    if current() is None:
        return contextlib.nullcontext()
    from .otel import remote_parent as attach

    return attach(headers)


def trace_headers() -> dict[str, str]:
    """The current trace context as headers (W3C `traceparent`), for work handed to another
    process (a queued job), which runs it under `remote_parent(headers)`. Empty when tracing is off."""
    if current() is None:
        return {}
    from .otel import inject_headers

    return inject_headers()
