"""One request's life: its context, its run (ending with one `done` or one `error` event), and
the loop that pours a provider's deltas through the accumulator into the emitter."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import _observe
from .._redact import redact
from ..errors import ConfigurationError
from ..event_values import AttemptValue, DoneValue
from ..events import Event, EventEmitter, EventLevel, EventType, RequestTracker
from ..types import LMOutput
from .accumulator import Accumulator
from .deltas import Delta

if TYPE_CHECKING:
    from ..budget import Budget

__all__ = [
    "Carry",
    "RequestContext",
    "check_open",
    "current_request",
    "emit_done",
    "emit_failure",
    "pour",
    "reset_current",
    "run_request",
    "set_current",
]

_request_ids = itertools.count(1)
_REQ_PREFIX = os.urandom(3).hex()


class RequestContext:
    """One logical request: one `process()`/`stream()` call, or one standalone `invoke()`.

    `emitter` receives its events; `trackers` are told when it is created, starts and ends
    (the emitter's own tracker, plus a user's emitter's when a request stream forwards to it).
    `step` counts the model calls of its tool loop. `attempts` lists the model calls a fallback
    chain or pool made (the `done` event's value carries them); `budget` is charged per model
    call, so a chain's failed attempts count too; `on_first` is told of each attempt's first
    content delta (a fallback's first-token timeout).
    """

    __slots__ = (
        "_blocks",
        "attempts",
        "budget",
        "emitter",
        "first_token_at",
        "on_first",
        "request_id",
        "started",
        "step",
        "trackers",
    )

    def __init__(self, emitter: EventEmitter | None, trackers: Sequence[RequestTracker] | None = None) -> None:
        check_open(emitter)
        self.request_id = f"req_{_REQ_PREFIX}_{next(_request_ids)}"
        self.emitter = emitter
        if trackers is None:
            trackers = (emitter.tracker,) if emitter is not None else ()
        self.trackers = tuple(trackers)
        self.started = time.perf_counter()
        self.step = 0
        self._blocks = 0
        self.first_token_at: float | None = None
        self.attempts: list[dict[str, Any]] = []
        self.budget: Budget | None = None
        self.on_first: Callable[[], None] | None = None

    def register(self, coro: Coroutine[Any, Any, Any] | None = None) -> None:
        """Count the request as running from now on (`coro`: its not-yet-started coroutine)."""
        for t in self.trackers:
            t.register(self.request_id, coro)

    def block_meta(self) -> dict[str, Any]:
        """Metadata shared (same dict) by every event of one new content block."""
        self._blocks += 1
        return {"request_id": self.request_id, "block_id": f"{self.request_id}.{self._blocks}", "step": self.step}

    async def emit(self, value: Any, type: str, level: EventLevel = EventLevel.INFO, **meta: Any) -> None:
        if self.emitter is None:
            return
        meta["request_id"] = self.request_id
        await self.emitter.dispatch(Event(value, type, level, meta))


def check_open(emitter: EventEmitter | None) -> None:
    """A closed emitter takes no new request: say so when the request is made, not never."""
    if emitter is not None and emitter.closed:
        raise ConfigurationError(
            "this EventEmitter is closed and takes no new requests; create a new one "
            "(or call close() only after the last request)"
        )


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("lmstream_request", default=None)


def current_request() -> RequestContext | None:
    """The request running in this task, if any (an invoker called inside `process()` joins it)."""
    return _current.get()


def set_current(ctx: RequestContext | None) -> contextvars.Token[RequestContext | None]:
    """Make `ctx` the request of this task (work detached from the request that started it, such
    as a generation the cache shares); undo with `_current.reset` via `reset_current`."""
    return _current.set(ctx)


def reset_current(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


T = TypeVar("T")


async def run_request(
    ctx: RequestContext, work: Callable[[], Awaitable[tuple[T, LMOutput]]], kind: str | None = None
) -> T:
    """Run one registered request: its events end with one `done` or one `error`, and its
    trackers learn it finished (so `stream()` can end) however it ends.

    `kind` ("process", "stream") names the request's parent span when tracing is on; a
    standalone `invoke()` passes None (its model-call span is the whole request)."""
    token = _current.set(ctx)
    for t in ctx.trackers:
        t.started(ctx.request_id)
    span = None  # observability seam (lmstream.otel): the request's parent span, when tracing is on
    if kind is not None and (obs := _observe.current()) is not None:
        span = obs.request_started(ctx.request_id, kind)
    try:
        try:
            result, output = await work()
        except BaseException as exc:
            if span is not None:
                span.end(None, exc)
            await emit_failure(ctx, exc)
            raise
        if span is not None:
            span.end(output, None)
        await emit_done(ctx, output)
        return result
    finally:
        _current.reset(token)
        for t in ctx.trackers:
            t.finished(ctx.request_id)


async def emit_done(ctx: RequestContext, out: LMOutput) -> None:
    """The request's last event: usage and timings in its metadata; its value lists the model
    calls a fallback chain or pool made (`{"attempts": [...]}`) and, behind a response cache,
    whether it served the answer (`{"cache": {"hit", "joined", "age"}}`); else it is empty."""
    value: DoneValue = {}
    if ctx.attempts:
        value["attempts"] = [_public(a) for a in ctx.attempts]
    if out.cache is not None:
        value["cache"] = out.cache
    await ctx.emit(
        value or "",
        EventType.DONE,
        EventLevel.INFO,
        usage=out.usage.to_dict(),
        finish_reason=out.finish_reason,
        duration=out.duration,
        time_to_first_token=out.time_to_first_token,
    )


def _public(attempt: dict[str, Any]) -> AttemptValue:
    """An attempt as events show it: the keys an `AttemptValue` has (not the engine's own `_...`)."""
    return cast(AttemptValue, {k: v for k, v in attempt.items() if not k.startswith("_")})


async def emit_failure(ctx: RequestContext, exc: BaseException) -> None:
    """The last event of a failed or cancelled request."""
    if ctx.emitter is None:
        return
    if isinstance(exc, asyncio.CancelledError):
        # Cancellation must end the request at once: a stuck handler gets no more than a moment.
        event = Event(
            "request cancelled",
            EventType.ERROR,
            EventLevel.ERROR,
            {"request_id": ctx.request_id, "error_type": "CancelledError"},
        )
        await ctx.emitter.deliver_bounded(event, 0.2)
        return
    meta: dict[str, Any] = {"error_type": type(exc).__name__}
    if ctx.attempts:  # a fallback chain's attempts, each of which failed
        meta["attempts"] = [_public(a) for a in ctx.attempts]
    status = getattr(exc, "status_code", None)
    if status is not None:
        meta["status_code"] = status
    # the event leaves the process (SSE, Redis, a file): the upstream's text loses its secrets
    await ctx.emit(redact(str(exc)), EventType.ERROR, EventLevel.ERROR, **meta)


class Carry:
    """What a continuing fallback starts from: the answer's text so far and its text block."""

    __slots__ = ("block", "text")

    def __init__(self, text: str, block: dict[str, Any] | None) -> None:
        self.text = text
        self.block = block


def new_accumulator(
    ctx: RequestContext, model: str, structured: bool, carry: Carry | None = None
) -> Accumulator[Event]:
    return Accumulator(
        Event,
        EventLevel.INFO,
        ctx.block_meta,
        model=model,
        structured=structured,
        started_at=ctx.started,
        prefix=carry.text if carry is not None else "",
        prefix_block=carry.block if carry is not None else None,
        on_first=ctx.on_first,
    )


async def pour(ctx: RequestContext, acc: Accumulator[Event], deltas: AsyncIterator[Delta]) -> LMOutput:
    """Feed one attempt's deltas through the accumulator, delivering its events as they come."""
    emitter = ctx.emitter
    feed = acc.feed
    try:
        if emitter is None:
            async for d in deltas:
                feed(d)
        elif emitter.all_sync:
            deliver = emitter.dispatch_nowait
            async for d in deltas:
                for e in feed(d):
                    deliver(e)
        else:
            dispatch = emitter.dispatch
            async for d in deltas:
                for e in feed(d):
                    await dispatch(e)
    finally:
        if acc.first_at is not None and ctx.first_token_at is None:
            ctx.first_token_at = acc.first_at
        aclose = getattr(deltas, "aclose", None)
        if aclose is not None:
            await aclose()
    return acc.finish()
