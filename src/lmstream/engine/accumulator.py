"""The one accumulator: a provider's deltas in, events and an `LMOutput` out.

A pure state machine, no I/O and no awaits: `feed(delta)` returns the events that delta
produces and `finish()` the output, so every provider streams identically and the whole
thing is tested without a network or a model. Events are built by the factory passed in
(`lmstream.events.Event` in the library), so this module knows no event classes: only the
vocabulary, `EventType`, which lives with the data types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from .. import _json
from ..errors import ProviderError, StreamInterruptedError
from ..event_values import ToolCallStartValue
from ..structured import PartialJSONParser
from ..types import EventType, LMOutput, ThinkingBlock, TokenUsage, ToolCall
from .deltas import Delta, FileDelta, FinishDelta, StatusDelta, ThinkingDelta, ToolCallDelta, UsageDelta

__all__ = ["Accumulator"]

E = TypeVar("E")

# The per-delta event types, bound once: an Enum attribute lookup costs more than the rest of
# a text token's handling.
_RESPONSE = EventType.RESPONSE
_THINKING = EventType.THINKING
_TOOL_CALL_DELTA = EventType.TOOL_CALL_DELTA
_DATA = EventType.DATA

_NONE: tuple[()] = ()


class _ToolBuf:
    __slots__ = ("emitted", "id", "meta", "name", "parts", "signature")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []
        self.signature: bytes | str | None = None
        self.meta: dict[str, Any] | None = None  # set once tool_call_start went out
        self.emitted = False  # the complete tool_call went out


class Accumulator(Generic[E]):
    """Turns one model call's deltas into events and an `LMOutput` (O(n) in stream length).

    `make_event(value, type, level, metadata)` builds each event (all at `level`);
    `new_block()` returns the metadata dict shared by the events of one new content block.
    Text, thinking and each tool call are blocks. `started` turns true with the first content
    delta: from then on a failure is an interruption, never a silent retry.

    A fallback that continues another model's text passes that text as `prefix` and its text
    block's metadata as `prefix_block`: the answer then goes on in the same block, and the
    output's text is the prefix plus what this call adds. `on_first` is called once, at the
    first content delta (a fallback's first-token timeout is cancelled there).
    """

    def __init__(
        self,
        make_event: Callable[[Any, str, Any, dict[str, Any]], E],
        level: Any,
        new_block: Callable[[], dict[str, Any]],
        *,
        model: str = "",
        structured: bool = False,
        started_at: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        prefix: str = "",
        prefix_block: dict[str, Any] | None = None,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self._make = make_event
        self._level = level
        self._new_block = new_block
        self._clock = clock
        self.model = model
        self.started_at = clock() if started_at is None else started_at
        self.partial = PartialJSONParser() if structured else None
        self.started = False
        self.first_at: float | None = None  # clock() at the first content delta
        self.ttft: float | None = None
        self.text_parts: list[str] = [prefix] if prefix else []
        self.thinking_parts: list[str] = []
        self.thinking_blocks: list[ThinkingBlock] = []
        self.tools: dict[int, _ToolBuf] = {}
        self.usage = TokenUsage()
        self.finish_reason: str | None = None
        self.finished = False  # the provider's end marker was seen
        self.response_id: str | None = None  # from FinishDelta, for tracing
        self.response_model: str | None = None
        self._text_meta: dict[str, Any] | None = None
        self._thinking_meta: dict[str, Any] | None = None
        self._status_meta: dict[str, Any] | None = None
        self._think_start = 0
        self._signature: str | None = None
        self._prefix_block = prefix_block
        self._on_first = on_first
        self._file_meta: dict[str, dict[str, Any]] = {}  # a produced file's key -> its block
        self.files: list[dict[str, Any]] = []  # the finished files' event values, in order

    # ----- deltas in, events out
    def feed(self, d: Delta) -> Sequence[E]:
        """The events this delta produces, in order (often none, one for a text token)."""
        if type(d) is str:  # the hot path, one per text token: tested before `match`, which costs more
            meta = self._text_meta
            if meta is None or self.partial is not None or not d:
                return self._text(d)
            self.text_parts.append(d)
            return (self._make(d, _RESPONSE, self._level, meta),)
        match d:
            case ThinkingDelta():
                return self._thinking(d)
            case ToolCallDelta():
                return self._tool(d)
            case UsageDelta():
                self._usage(d)
                return _NONE
            case FinishDelta():
                return self._finish(d)
            case StatusDelta():
                return self._status(d)
            case FileDelta():
                return self._file(d)
            case str():  # a str subclass
                return self._text(str(d))
        raise TypeError(f"provider yielded an unknown delta {d!r}")

    def _file(self, d: FileDelta) -> Sequence[E]:
        """A produced file: one block per file, its partial previews and the final file in it."""
        out: list[E] = []
        if not self.started:
            self._first()
        if self._thinking_meta is not None:
            out.append(self._end_thinking())
        meta = self._file_meta.get(d.key)
        if meta is None:
            meta = self._file_meta[d.key] = self._new_block()
            self._text_meta = None  # text after a file is a new block
        value = d.value()
        if d.partial_index is None:
            self.files.append(value)
        out.append(self._make(value, EventType.FILE, self._level, meta))
        return out

    def _status(self, d: StatusDelta) -> Sequence[E]:
        """Queue feedback: one block for all of this call's status events; not content."""
        if self._status_meta is None:
            self._status_meta = self._new_block()
        return (self._make(d.value(), EventType.STATUS, self._level, self._status_meta),)

    def _finish(self, d: FinishDelta) -> Sequence[E]:
        self.finished = True
        if d.reason:
            self.finish_reason = d.reason
        self.response_id, self.response_model = d.response_id, d.response_model
        return self._close_blocks()

    def _first(self) -> None:
        self.started = True
        self.first_at = now = self._clock()
        self.ttft = now - self.started_at
        if self._on_first is not None:
            self._on_first()

    def _text(self, d: str) -> Sequence[E]:
        if not d:
            return _NONE
        out: list[E] = []
        if not self.started:
            self._first()
        if self._thinking_meta is not None:
            out.append(self._end_thinking())
        self.text_parts.append(d)
        meta = self._text_meta
        if meta is None:
            if self._prefix_block is not None:  # a continuation: the answer's block goes on
                meta, self._prefix_block = self._prefix_block, None
            else:
                meta = self._new_block()
            self._text_meta = meta
        out.append(self._make(d, _RESPONSE, self._level, meta))
        if self.partial is not None and self.partial.feed(d):
            out.append(self._make(self.partial.value, _DATA, self._level, meta))
        return out

    def _thinking(self, d: ThinkingDelta) -> Sequence[E]:
        out: list[E] = []
        if d.text:
            if not self.started:
                self._first()
            self.thinking_parts.append(d.text)
            meta = self._thinking_meta
            if meta is None:
                meta = self._thinking_meta = self._new_block()
                self._text_meta = None
                self._think_start = len(self.thinking_parts) - 1
                out.append(self._make("", EventType.THINKING_START, self._level, meta))
            out.append(self._make(d.text, _THINKING, self._level, meta))
        if d.signature:
            self._signature = d.signature
        if d.end and self._thinking_meta is not None:
            out.append(self._end_thinking())
        return out

    def _end_thinking(self) -> E:
        meta = self._thinking_meta
        assert meta is not None
        self._thinking_meta = None
        self.thinking_blocks.append(ThinkingBlock("".join(self.thinking_parts[self._think_start :]), self._signature))
        self._signature = None
        return self._make("", EventType.THINKING_END, self._level, meta)

    def _tool(self, d: ToolCallDelta) -> Sequence[E]:
        out: list[E] = []
        if not self.started:
            self._first()  # a tool-only turn's first fragment is its first token
        if self._thinking_meta is not None:
            out.append(self._end_thinking())
        buf = self.tools.get(d.index)
        if buf is None:
            buf = self.tools[d.index] = _ToolBuf()
        if d.id:
            buf.id = d.id
        if d.name:
            buf.name = d.name
        if d.signature:
            buf.signature = d.signature
        if d.arguments:
            buf.parts.append(d.arguments)
        if buf.meta is None:
            if buf.name:  # the call is known by name: announce it with what arrived so far
                self._start_tool(buf, d.index, out)
        elif d.arguments:
            out.append(self._make(d.arguments, _TOOL_CALL_DELTA, self._level, buf.meta))
        return out

    def _start_tool(self, buf: _ToolBuf, index: int, out: list[E]) -> dict[str, Any]:
        buf.meta = meta = self._new_block()
        self._text_meta = None  # text after a tool call is a new block
        start: ToolCallStartValue = {"id": buf.id or f"call_{index}", "name": buf.name or ""}
        out.append(self._make(start, EventType.TOOL_CALL_START, self._level, meta))
        if buf.parts:
            out.append(self._make("".join(buf.parts), _TOOL_CALL_DELTA, self._level, meta))
        return meta

    def _usage(self, d: UsageDelta) -> None:
        u = self.usage
        if d.input_tokens is not None:
            u.input_tokens = d.input_tokens
        if d.output_tokens is not None:
            u.output_tokens = d.output_tokens
        if d.cached_tokens is not None:
            u.cached_tokens = d.cached_tokens
        if d.reasoning_tokens is not None:
            u.reasoning_tokens = d.reasoning_tokens

    def _close_blocks(self) -> Sequence[E]:
        """At the end marker: close thinking, and complete every tool call (once)."""
        out: list[E] = []
        if self._thinking_meta is not None:
            out.append(self._end_thinking())
        for index in sorted(self.tools):
            buf = self.tools[index]
            if buf.emitted:
                continue
            meta = buf.meta if buf.meta is not None else self._start_tool(buf, index, out)
            buf.emitted = True
            out.append(self._make(_tool_call(buf, index).to_dict(), EventType.TOOL_CALL, self._level, meta))
        return out

    # ----- the output
    def finish(self) -> LMOutput:
        """The call's output, only for a stream the provider ended and said why.

        Without the end marker: `ProviderError` when tokens came (the caller turns it into an
        interruption), `StreamInterruptedError` for an empty reply. With the marker but no
        finish reason (`[DONE]` alone): `StreamInterruptedError`, never a short success.
        """
        if not self.finished:
            if not self.started:
                raise self._interrupted(
                    "the server answered but the stream ended with no tokens and no end marker: "
                    "it may have refused the prompt (e.g. one longer than its context window); check the server's log"
                )
            raise ProviderError("the stream ended without the provider's end marker (dropped connection?)")
        if self.finish_reason is None:
            why = "the provider ended the stream without saying why (no finish reason): it was cut short"
            if not self.started:
                why += ", before any token: the server may have refused the prompt (check the server's log)"
            else:
                why += f" after {len(self.text_parts)} text deltas"
            raise self._interrupted(
                f"{why}. An OpenAI-compatible server does this when it interrupts a running request "
                "(start llama_cpp.server with --interrupt_requests False)"
            )
        out = self.output()
        if out.tool_calls and self.finish_reason == "stop":
            out.finish_reason = self.finish_reason = "tool_calls"
        return out

    def output(self) -> LMOutput:
        """What has accumulated so far (also the partial output of an interrupted stream)."""
        return LMOutput(
            text="".join(self.text_parts),
            thinking="".join(self.thinking_parts),
            thinking_blocks=list(self.thinking_blocks),
            tool_calls=[_tool_call(self.tools[i], i) for i in sorted(self.tools)],
            usage=self.usage,
            finish_reason=self.finish_reason,
            duration=self._clock() - self.started_at,
            time_to_first_token=self.ttft,
            model=self.model,
            files=list(self.files),
        )

    def interrupted(self, exc: BaseException) -> StreamInterruptedError:
        """The error for a failure after the first token: it carries exactly what was streamed."""
        return self._interrupted(f"stream interrupted after {len(self.text_parts)} text deltas: {exc}", exc)

    def _interrupted(self, message: str, cause: BaseException | None = None) -> StreamInterruptedError:
        out = self.output()
        out.finish_reason = "error"
        err = StreamInterruptedError(message, partial_output=out, cause=cause)
        err.text_block = self._text_meta or self._prefix_block  # where a continuation goes on
        return err


def _tool_call(buf: _ToolBuf, index: int) -> ToolCall:
    raw = "".join(buf.parts)
    try:
        args = _json.loads(raw) if raw.strip() else {}
    except ValueError:
        args = {"_raw": raw}
    if not isinstance(args, dict):
        args = {"value": args}
    return ToolCall(buf.id or f"call_{index}", buf.name or "", args, buf.signature)
