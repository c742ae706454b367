"""A finished answer as a cache entry: its events (with their timing) and its `LMOutput`, as bytes.

The same bytes go to every store (memory or Redis), so the memory store's `max_bytes` counts
exactly what it holds. Events are kept as `(offset, type, value, level, block)`: the block's
metadata is stored once per block, and a replay gives each block a new id of the reader's own.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _json
from ..cost import Cost
from ..types import EventType, LMOutput, ThinkingBlock, TokenUsage, ToolCall

__all__ = ["Entry", "Record", "decode", "encode", "is_recorded"]

#: entry format; an entry of another version is treated as a miss
FORMAT = 2

#: the per-token types stored short (most of an entry is these)
_SHORT = {EventType.RESPONSE.value: "r", EventType.THINKING.value: "t", EventType.TOOL_CALL_DELTA.value: "a"}
_LONG = {v: k for k, v in _SHORT.items()}
_INFO = 2  # EventLevel.INFO, the level of every event a model call makes

#: (seconds since the generation started, type, value, level, metadata as emitted)
Record = tuple[float, str, Any, int, dict[str, Any]]

#: metadata the replay sets anew for its own request (never copied from the original)
_OWN = frozenset({"request_id", "block_id"})

#: a request's position in a local queue is about that run only: never replayed
_NOT_RECORDED = frozenset({EventType.STATUS})


def is_recorded(type_: str) -> bool:
    return type_ not in _NOT_RECORDED


@dataclass(slots=True)
class Entry:
    """A decoded entry: `records` with `block` indices in place of metadata dicts."""

    created: float  # wall clock (epoch seconds) when the answer finished
    records: list[tuple[float, str, Any, int, int, dict[str, Any] | None]]
    blocks: list[dict[str, Any]]  # per block: the metadata besides request_id/block_id
    output: LMOutput


def encode(records: Sequence[Record], output: LMOutput) -> bytes:
    """The entry's bytes; raises TypeError/ValueError for a value that is not JSON data."""
    blocks: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    events: list[list[Any]] = []
    for t, type_, value, level, meta in records:
        if not is_recorded(type_):
            continue
        bid = meta.get("block_id")
        name = str(type_)
        # [ms since the start, type, value, block] (+ level, + metadata of an event outside blocks)
        row: list[Any] = [round(t * 1000), _SHORT.get(name, name), value]
        if bid is None:
            extra = {k: v for k, v in meta.items() if k not in _OWN}
            row += [-1, int(level), extra]
        else:
            b = index.get(bid)
            if b is None:
                b = index[bid] = len(blocks)
                blocks.append({k: v for k, v in meta.items() if k not in _OWN})
            row.append(b)
            if int(level) != _INFO:
                row.append(int(level))
        events.append(row)
    doc = {"f": FORMAT, "created": time.time(), "events": events, "blocks": blocks, "output": _output(output)}
    import orjson  # a hard dependency; strict here: a value that is not JSON data is not cached

    return orjson.dumps(doc)


def decode(raw: bytes) -> Entry | None:
    """The entry, or None for bytes of another format (an older lmstream)."""
    try:
        doc = _json.loads(raw)
        if doc.get("f") != FORMAT:
            return None
        records = [
            (
                e[0] / 1000,
                _LONG.get(e[1], e[1]),
                e[2],
                e[4] if len(e) > 4 else _INFO,
                e[3],
                e[5] if len(e) > 5 else None,
            )
            for e in doc["events"]
        ]
        return Entry(doc["created"], records, doc["blocks"], _unoutput(doc["output"]))
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _sig(s: bytes | str | None) -> Any:
    if isinstance(s, bytes):
        return {"b64": base64.b64encode(s).decode("ascii")}
    return s


def _unsig(s: Any) -> Any:
    if isinstance(s, dict):
        return base64.b64decode(s["b64"])
    return s


def _cost(c: Cost | None) -> Any:
    return None if c is None else c.to_dict()


def _uncost(d: Any) -> Cost | None:
    if d is None:
        return None
    return Cost(
        d["total"], input=d["input"], output=d["output"], cache_read=d["cache_read"], estimated=bool(d.get("estimated"))
    )


def _output(out: LMOutput) -> dict[str, Any]:
    u = out.usage
    return {
        "text": out.text,
        "thinking": out.thinking,
        "thinking_blocks": [[b.text, _sig(b.signature)] for b in out.thinking_blocks],
        "tool_calls": [[c.id, c.name, c.arguments, _sig(c.signature)] for c in out.tool_calls],
        "usage": [u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens, _cost(u.cost)],
        "finish_reason": out.finish_reason,
        "duration": out.duration,
        "ttft": out.time_to_first_token,
        "model": out.model,
    }


def _unoutput(d: dict[str, Any]) -> LMOutput:
    i, o, c, r, cost = d["usage"]
    return LMOutput(
        text=d["text"],
        thinking=d["thinking"],
        thinking_blocks=[ThinkingBlock(t, _unsig(s)) for t, s in d["thinking_blocks"]],
        tool_calls=[ToolCall(a, n, args, _unsig(s)) for a, n, args, s in d["tool_calls"]],
        usage=TokenUsage(i, o, c, r, _uncost(cost)),
        finish_reason=d["finish_reason"],
        duration=d["duration"],
        time_to_first_token=d["ttft"],
        model=d["model"],
    )
