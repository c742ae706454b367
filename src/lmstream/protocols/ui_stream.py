"""lmstream events -> Vercel AI SDK UI message stream (v1) chunks. Pure: no I/O, no framework.

One `UIStreamMapper` per answer. It keeps the little state the protocol needs (which text or
reasoning part is open, which tool calls were announced, which step is running) so that every
`*-delta`/`*-end` follows its `*-start` (the `ai` client throws otherwise) and the stream always
ends with `finish` (a normal answer), `error` (a failed one) or `abort` (a stopped one).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from ..event_values import (
    ToolApprovalRequestValue,
    ToolCallStartValue,
    ToolCallValue,
    ToolProgressValue,
    ToolResultValue,
    UsageValue,
)
from ..events import EventType

__all__ = ["FINISH_REASONS", "UIStreamMapper", "map_finish_reason", "message_id_of", "new_message_id"]

# lmstream's normalised finish reasons -> the `ai` package's enum; anything else is "other".
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
    "tool_approval": "tool-calls",  # the answer stops at approval requests; the next request goes on
}

Chunk = dict[str, Any]


def map_finish_reason(reason: str | None) -> str:
    """`stop`->`stop`, `length`->`length`, `tool_calls`->`tool-calls`, ... else `other`.

    An unknown or missing reason is `other` (the `ai` package's "the model ended for a reason
    not listed"), never `stop`: a stream that did not say it finished is not reported as one.
    """
    if reason is None:
        return "other"
    return FINISH_REASONS.get(reason, "other")


def new_message_id() -> str:
    """A unique id per answer: the chat state replaces messages by id, so reuse would overwrite."""
    return f"msg_{uuid.uuid4().hex}"


def message_id_of(request_id: str) -> str:
    """The UI message id of the answer that request `request_id` streams: a live response, a
    replay and a saved approval step all derive it so, and so agree."""
    return f"msg_{request_id}"


class UIStreamMapper:
    """Turns one request's events into UI message chunks, in order.

    `start()` gives the opening chunk; `feed(event_type, value, metadata)` the chunks for one
    event (often none or one); `stopped()` the closing chunks of an answer cut short by a stop.
    After a terminal chunk (`finish`, `error`, `abort`) `closed` is true and `feed` returns [].
    """

    __slots__ = (
        "_announced",
        "_call_of_block",
        "_previews",
        "_reasoning",
        "_resets",
        "_saw_result",
        "_step",
        "_text",
        "closed",
        "message_id",
    )

    def __init__(self, message_id: str | None = None, *, step: Any = None, announced: tuple[str, ...] = ()) -> None:
        """`step` and `announced` continue a message the client already has (after a tool
        approval): that step is open and those tool calls are shown."""
        self.message_id = message_id or new_message_id()
        self._text: str | None = None  # id of the open text part
        self._reasoning: str | None = None  # id of the open reasoning part
        self._step: Any = step  # step of the open start-step (None: no step open)
        self._announced: set[str] = set(announced)  # tool calls whose tool-input-start went out
        self._call_of_block: dict[Any, str] = {}  # block_id -> tool call id (deltas carry only the block)
        self._saw_result = False  # fallback step detection when events carry no "step"
        self._resets = 0  # data-reset parts sent (each gets its own id, so the client keeps each)
        self._previews: set[str] = set()  # produced files' blocks with a preview part on the client
        self.closed = False

    def start(self, metadata: dict[str, Any] | None = None) -> Chunk:
        chunk: Chunk = {"type": "start", "messageId": self.message_id}
        if metadata:
            chunk["messageMetadata"] = metadata
        return chunk

    # ------------------------------------------------------------------ helpers
    def _close_parts(self, out: list[Chunk]) -> None:
        if self._text is not None:
            out.append({"type": "text-end", "id": self._text})
            self._text = None
        if self._reasoning is not None:
            out.append({"type": "reasoning-end", "id": self._reasoning})
            self._reasoning = None

    def _enter_step(self, meta: dict[str, Any], out: list[Chunk]) -> None:
        """Open a step, or move to the next one when `metadata["step"]` changes."""
        step = meta.get("step")
        if step is None:  # events without step marks: a tool result ends the model call
            if self._step is not None and not self._saw_result:
                return
            step = (self._step or 0) + 1 if isinstance(self._step, int) else 1
        elif step == self._step:
            return
        if self._step is not None:
            self._close_parts(out)
            out.append({"type": "finish-step"})
        out.append({"type": "start-step"})
        self._step = step
        self._saw_result = False

    def _end_step(self, out: list[Chunk]) -> None:
        self._close_parts(out)
        if self._step is not None:
            out.append({"type": "finish-step"})
            self._step = None

    # ------------------------------------------------------------------ mapping
    def feed(self, type_: str, value: Any, meta: dict[str, Any]) -> list[Chunk]:
        """The chunks for one event (`type_` is `Event.type`)."""
        if self.closed:
            return []
        if type_ == EventType.RESPONSE:
            if self._text is not None and self._text == meta.get("block_id"):  # a block lives in one step
                return [{"type": "text-delta", "id": self._text, "delta": value}]  # hot path
            out: list[Chunk] = []
            self._enter_step(meta, out)
            block = str(meta.get("block_id") or "text")
            if self._text != block:
                self._close_parts(out)
                out.append({"type": "text-start", "id": block})
                self._text = block
            out.append({"type": "text-delta", "id": block, "delta": value})
            return out
        out = []
        if type_ in (EventType.THINKING_START, EventType.THINKING, EventType.THINKING_END):
            block = str(meta.get("block_id") or "reasoning")
            if type_ == EventType.THINKING_END:
                if self._reasoning == block:
                    out.append({"type": "reasoning-end", "id": block})
                    self._reasoning = None
                return out
            self._enter_step(meta, out)
            if self._reasoning != block:
                self._close_parts(out)
                out.append({"type": "reasoning-start", "id": block})
                self._reasoning = block
            if type_ == EventType.THINKING and value:
                out.append({"type": "reasoning-delta", "id": block, "delta": value})
            return out
        if type_ == EventType.TOOL_CALL_START:
            begun = cast(ToolCallStartValue, value)
            self._enter_step(meta, out)
            self._close_parts(out)
            self._announce(begun, out)
            self._call_of_block[meta.get("block_id")] = str(begun["id"])
            return out
        if type_ == EventType.TOOL_CALL_DELTA:
            call_id = self._call_of_block.get(meta.get("block_id"))
            if call_id is None:
                return out  # a fragment we cannot place; tool-input-available carries the full input
            out.append({"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": value})
            return out
        if type_ == EventType.TOOL_CALL:
            call = cast(ToolCallValue, value)
            self._enter_step(meta, out)
            self._close_parts(out)
            self._announce(call, out)
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": str(call["id"]),
                    "toolName": str(call["name"]),
                    "input": call.get("arguments", {}),
                }
            )
            return out
        if type_ == EventType.TOOL_RESULT:
            result = cast(ToolResultValue, value)
            call_id = str(result["id"])
            if call_id not in self._announced:  # a result for a call never shown: show the call first
                self._enter_step(meta, out)
                self._announce(result, out)
                out.append(
                    {
                        "type": "tool-input-available",
                        "toolCallId": call_id,
                        "toolName": str(result["name"]),
                        "input": {},
                    }
                )
            if result.get("denied"):
                out.append({"type": "tool-output-denied", "toolCallId": call_id})
            elif meta.get("is_error"):
                out.append({"type": "tool-output-error", "toolCallId": call_id, "errorText": str(result["output"])})
            else:
                # the core puts the tool's own value here (a dict stays an object for the browser)
                out.append({"type": "tool-output-available", "toolCallId": call_id, "output": result["output"]})
            self._saw_result = True
            return out
        if type_ == EventType.TOOL_APPROVAL_REQUEST:
            asked = cast(ToolApprovalRequestValue, value)
            out.append(
                {
                    "type": "tool-approval-request",
                    "approvalId": str(asked["approval_id"]),
                    "toolCallId": str(asked["tool_call_id"]),
                }
            )
            return out
        if type_ == EventType.TOOL_PROGRESS:  # same id: the latest progress replaces the earlier part
            progress = cast(ToolProgressValue, value)
            out.append({"type": "data-tool-progress", "id": str(progress["tool_call_id"]), "data": progress})
            return out
        if type_ == EventType.DATA:
            out.append({"type": "data-object", "id": str(meta.get("block_id") or "object"), "data": value})
            return out
        if type_ == EventType.FILE:
            return self._file(value, meta, out)
        if type_ == EventType.RESET:
            return self._reset(value)
        if type_ == EventType.USAGE:
            out.append({"type": "data-usage", "id": "usage", "data": value})
            return out
        if type_ == EventType.DONE:
            self._close_parts(out)
            usage = _done_usage(meta)
            if isinstance(value, dict) and value.get("cache") is not None:
                usage["cache"] = value["cache"]  # the page marks an answer the response cache served
            out.append({"type": "data-usage", "id": "usage", "data": usage})
            self._end_step(out)
            out.append({"type": "finish", "finishReason": map_finish_reason(meta.get("finish_reason"))})
            self.closed = True
            return out
        if type_ == EventType.ERROR:
            self._close_parts(out)
            out.append({"type": "error", "errorText": str(value) or "the request failed"})
            self.closed = True
            return out
        # Any other kind (status, activity, reference, code, a user's own type) goes to the
        # client's onData without being stored: an unknown chunk type would abort the message.
        out.append({"type": f"data-{type_}", "data": value, "transient": True})
        return out

    def _file(self, value: Any, meta: dict[str, Any], out: list[Chunk]) -> list[Chunk]:
        """A file the model made. Previews (`partial_index`) are one `data-file-preview` part,
        replaced in place by id; the file itself is a `file` part, after which the preview part
        is emptied (`{"done": true}`) so a saved chat keeps the image once, not every preview."""
        if not isinstance(value, dict):
            return out
        self._close_parts(out)
        mime = str(value.get("mime_type") or "application/octet-stream")
        url = value.get("url") or f"data:{mime};base64,{value.get('data') or ''}"
        block = str(meta.get("block_id") or "file")
        if value.get("partial_index") is not None:
            data = {"mediaType": mime, "url": url, "index": value["partial_index"]}
            out.append({"type": "data-file-preview", "id": block, "data": data})
            self._previews.add(block)
            return out
        out.append({"type": "file", "url": url, "mediaType": mime})
        if block in self._previews:
            self._previews.discard(block)
            out.append({"type": "data-file-preview", "id": block, "data": {"done": True}})
        return out

    def _reset(self, value: dict[str, Any]) -> list[Chunk]:
        """A fallback model took over. A restart (`discarded` > 0) closes the partial's parts, so
        the new answer is a new text part and a client drops the old one on `data-reset`; a
        continuation keeps the text part open and only says who goes on."""
        out: list[Chunk] = []
        if value.get("discarded"):
            self._close_parts(out)
        self._resets += 1
        out.append({"type": "data-reset", "id": f"reset-{self._resets}", "data": value})
        return out

    def _announce(self, call: ToolCallStartValue | ToolCallValue | ToolResultValue, out: list[Chunk]) -> None:
        call_id = str(call["id"])
        if call_id in self._announced:
            return
        self._announced.add(call_id)
        out.append({"type": "tool-input-start", "toolCallId": call_id, "toolName": str(call["name"])})

    def stopped(self, reason: str = "stopped") -> list[Chunk]:
        """Close what is open and say the answer was aborted (a stop, not an error)."""
        if self.closed:
            return []
        out: list[Chunk] = []
        self._end_step(out)
        out.append({"type": "abort", "reason": reason})
        self.closed = True
        return out


def _done_usage(meta: dict[str, Any]) -> dict[str, Any]:
    """The request's usage and timings, for a usage line under the answer."""
    usage = cast("UsageValue | None", meta.get("usage"))
    data: dict[str, Any] = dict(usage or {})
    for key in ("time_to_first_token", "duration"):
        if meta.get(key) is not None:
            data[key] = meta[key]
    return data
