"""Putting a recorded answer back on a request: from a running generation (a joined request)
or from a stored entry (a hit), with the reader's own request and block ids.

A reader gets every event from the first, in order. A hit is paced: `instant`, `recorded`
(the original gaps times a factor) or a number of tokens per second; the first event always
goes at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..engine.lifecycle import RequestContext
from ..errors import ConfigurationError
from ..events import Event, EventLevel, EventType
from .entry import Entry

__all__ = ["Pacing", "Replayer", "replay_entry"]

#: what counts as one token for a tokens-per-second pace
_TOKENS = frozenset({EventType.RESPONSE, EventType.THINKING, EventType.TOOL_CALL_DELTA})
_OWN = frozenset({"request_id", "block_id"})
#: events an instant replay hands over between two turns of the event loop
_BURST = 256
#: a stored type name back to the `EventType` member a live answer carries
_TYPES: dict[str, str] = {t.value: t for t in EventType}


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast a hit is replayed: `mode` "instant", "recorded" (gaps times `value`) or "rate"
    (`value` tokens per second)."""

    mode: str = "instant"
    value: float = 1.0

    @classmethod
    def parse(cls, pacing: Any) -> Pacing:
        """`"instant"`, `"recorded"`, `"recorded:0.5"` (half the original gaps), or a number of
        tokens per second (also as a string, for the command line)."""
        if isinstance(pacing, Pacing):
            return pacing
        if isinstance(pacing, int | float) and not isinstance(pacing, bool):
            if pacing <= 0:
                raise ConfigurationError(f"pacing as tokens per second must be > 0, got {pacing!r}")
            return cls("rate", float(pacing))
        if isinstance(pacing, str):
            text = pacing.strip().lower()
            if text == "instant":
                return cls()
            if text == "recorded":
                return cls("recorded", 1.0)
            if text.startswith("recorded:"):
                try:
                    factor = float(text.partition(":")[2])
                except ValueError:
                    factor = -1.0
                if factor >= 0:
                    return cls("recorded", factor)
            else:
                try:
                    return cls.parse(float(text))
                except ValueError:
                    pass
        raise ConfigurationError(
            f"pacing must be 'instant', 'recorded', 'recorded:FACTOR' (e.g. 'recorded:0.5') or tokens "
            f"per second (e.g. 40), got {pacing!r}"
        )


class Replayer:
    """Emits recorded events into one request, each block under a new block id of its own."""

    __slots__ = ("_blocks", "ctx")

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self._blocks: dict[Hashable, dict[str, Any]] = {}

    async def emit(
        self, type_: str, value: Any, level: int, block: Hashable | None, extra: dict[str, Any] | None
    ) -> None:
        ctx = self.ctx
        if block is not None:
            meta = self._blocks.get(block)
            if meta is None:
                meta = ctx.block_meta()
                if extra:
                    meta.update({k: v for k, v in extra.items() if k not in _OWN})
                self._blocks[block] = meta
        else:
            meta = {k: v for k, v in (extra or {}).items() if k not in _OWN}
            meta["request_id"] = ctx.request_id
        if ctx.first_token_at is None and type_ != EventType.STATUS:
            ctx.first_token_at = time.perf_counter()
        emitter = ctx.emitter
        if emitter is not None:
            await emitter.dispatch(Event(value, _TYPES.get(type_, type_), EventLevel(level), meta))


async def replay_entry(entry: Entry, ctx: RequestContext, pacing: Pacing) -> None:
    """Every event of `entry`, in order, at `pacing`; the first at once."""
    rep = Replayer(ctx)
    mode, value = pacing.mode, pacing.value
    start = time.perf_counter()
    first_t: float | None = None
    tokens = 0
    blocks = entry.blocks
    for i, (t, type_, val, level, b, extra) in enumerate(entry.records):
        if first_t is None:
            first_t = t
        elif mode == "instant":
            if i == 1 or i % _BURST == 0:
                # let the readers run: the first event reaches the client before the rest is replayed
                await asyncio.sleep(0)
        elif mode == "recorded":
            delay = start + (t - first_t) * value - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        elif mode == "rate" and type_ in _TOKENS and tokens:
            delay = start + tokens / value - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if type_ in _TOKENS:
            tokens += 1
        if b >= 0:
            await rep.emit(type_, val, level, b, blocks[b])
        else:
            await rep.emit(type_, val, level, None, extra)
