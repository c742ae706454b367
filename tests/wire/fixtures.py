"""Byte-level streaming fixtures for four provider APIs, built from their docs.

Every builder returns ``list[bytes]``: one element per SSE event, ready for
``Script(chunks=...)`` so each event goes out in its own write.  Builders are
parametrised by content (text pieces, tool calls, usage numbers) so tests pick
what they assert on.  Error-body helpers return ``bytes`` for ``Script(body=)``.

Framing facts encoded here (see the report / docstrings for sources):

* OpenAI Chat Completions: ``data: {json}\\n\\n`` only (no ``event:``), ending
  with ``data: [DONE]\\n\\n``.  With ``stream_options.include_usage`` every
  chunk carries ``"usage": null`` and one extra chunk with ``"choices": []``
  and the usage arrives just before ``[DONE]``.
* OpenAI Responses: ``event: <type>\\ndata: {json}\\n\\n`` pairs, each payload
  repeats ``type`` and has a monotonically increasing ``sequence_number``; no
  ``[DONE]`` sentinel.
* Anthropic Messages: ``event: <type>\\ndata: {json}\\n\\n``; ``ping`` events
  may appear anywhere; in-band failures are ``event: error``.
* Gemini ``streamGenerateContent?alt=sse``: ``data: {json}`` terminated by
  ``\\r\\n\\r\\n`` (CRLF, as Google's front ends send it), no ``event:`` lines and no
  sentinel; each chunk is a whole ``GenerateContentResponse``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------- helpers


def _dumps(obj: Any) -> str:
    """Compact JSON, as OpenAI and Anthropic put it on the wire."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse_data(obj: Any, *, newline: str = "\n") -> bytes:
    """One ``data:``-only SSE event."""
    payload = obj if isinstance(obj, str) else _dumps(obj)
    return f"data: {payload}{newline}{newline}".encode()


def sse_event(event: str, obj: Any, *, newline: str = "\n") -> bytes:
    """One named SSE event (``event:`` + ``data:``)."""
    payload = obj if isinstance(obj, str) else _dumps(obj)
    return f"event: {event}{newline}data: {payload}{newline}{newline}".encode()


def split_text(text: str, size: int) -> list[str]:
    """Cut ``text`` into pieces of ``size`` characters (for argument fragments)."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def join_chunks(chunks: Sequence[bytes]) -> bytes:
    """The whole body, e.g. to re-split at arbitrary byte boundaries."""
    return b"".join(chunks)


def rechunk(chunks: Sequence[bytes], size: int) -> list[bytes]:
    """Re-split a stream at fixed byte offsets, cutting through events/UTF-8."""
    body = join_chunks(chunks)
    return [body[i : i + size] for i in range(0, len(body), max(1, size))]


@dataclass(frozen=True)
class ToolCall:
    """A tool/function call as the model emits it (arguments as JSON text)."""

    name: str
    arguments: str
    id: str = "call_wire_0"
    #: Size of each streamed arguments fragment (characters).
    fragment: int = 7

    @property
    def args_obj(self) -> Any:
        return json.loads(self.arguments)


DEFAULT_TOOL_CALLS: tuple[ToolCall, ...] = (
    ToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_wire_0"),
    ToolCall("get_time", '{"timezone": "Europe/Paris"}', id="call_wire_1"),
)

# ============================================================ OpenAI (shared)


def openai_error_body(
    message: str = "Invalid request.",
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """``{"error": {"message","type","param","code"}}`` as OpenAI returns it."""
    return _dumps({"error": {"message": message, "type": type, "param": param, "code": code}}).encode()


#: Representative OpenAI error bodies by HTTP status.
OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid value for 'messages'.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided: sk-wire. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    404: (
        "The model `gpt-wire` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: (
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def openai_error_for(status: int) -> bytes:
    """Error body for ``status`` from :data:`OPENAI_ERRORS`."""
    message, kind, code = OPENAI_ERRORS.get(status, OPENAI_ERRORS[500])
    return openai_error_body(message, kind, None, code)


# ===================================================== OpenAI Chat Completions


def openai_chat_usage(
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    *,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    """A ``CompletionUsage`` object with the ``*_details`` breakdowns."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass
class _ChatChunker:
    """Shared envelope for ``chat.completion.chunk`` objects."""

    id: str
    model: str
    created: int
    include_usage: bool
    system_fingerprint: str | None
    out: list[bytes] = field(default_factory=list)

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.system_fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            obj["usage"] = None
        self.out.append(sse_data(obj))

    def finish(self, usage: dict[str, Any] | None, done: bool) -> list[bytes]:
        if self.include_usage and usage is not None:
            self.out.append(
                sse_data(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "service_tier": "default",
                        "system_fingerprint": self.system_fingerprint,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        if done:
            self.out.append(b"data: [DONE]\n\n")
        return self.out


def openai_chat_text(
    text_deltas: Sequence[str] = ("Hello", ",", " world", "!"),
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    completion_id: str = "chatcmpl-wire0001",
    created: int = 1_700_000_000,
    finish_reason: str = "stop",
    include_usage: bool = True,
    usage: dict[str, Any] | None = None,
    reasoning_deltas: Sequence[str] = (),
    reasoning_field: str = "reasoning_content",
    system_fingerprint: str | None = "fp_wire00001",
    done: bool = True,
) -> list[bytes]:
    """Text stream: role chunk, [reasoning deltas], content deltas, finish, usage, [DONE].

    ``reasoning_deltas`` mimic OpenAI-compatible servers (vLLM, DeepSeek,
    llama.cpp) that stream chain of thought in ``delta.reasoning_content``
    (newer vLLM: pass ``reasoning_field="reasoning"``) with ``content: null``.
    """
    c = _ChatChunker(completion_id, model, created, include_usage, system_fingerprint)
    c.chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in reasoning_deltas:
        c.chunk({"content": None, reasoning_field: piece})
    for piece in text_deltas:
        c.chunk({"content": piece})
    c.chunk({}, finish_reason)
    return c.finish(usage if usage is not None else openai_chat_usage(), done)


def openai_chat_tool_calls(
    calls: Sequence[ToolCall] = DEFAULT_TOOL_CALLS,
    *,
    interleave: bool = False,
    model: str = "gpt-4o-mini-2024-07-18",
    completion_id: str = "chatcmpl-wire0002",
    created: int = 1_700_000_000,
    include_usage: bool = True,
    usage: dict[str, Any] | None = None,
    system_fingerprint: str | None = "fp_wire00001",
    done: bool = True,
) -> list[bytes]:
    """Parallel tool calls: each opens with id/type/name and ``arguments: ""``,
    then ``arguments`` fragments keyed only by ``index``; finish ``tool_calls``.

    OpenAI sends call 0 fully, then call 1; ``interleave=True`` alternates
    fragments between calls (seen from some compatible servers) to test
    index-based merging.
    """
    c = _ChatChunker(completion_id, model, created, include_usage, system_fingerprint)
    c.chunk({"role": "assistant", "content": None, "refusal": None})
    fragments = [split_text(call.arguments, call.fragment) for call in calls]

    def opener(i: int, call: ToolCall) -> None:
        c.chunk(
            {
                "tool_calls": [
                    {"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
                ]
            }
        )

    def frag(i: int, text: str) -> None:
        c.chunk({"tool_calls": [{"index": i, "function": {"arguments": text}}]})

    if interleave:
        for i, call in enumerate(calls):
            opener(i, call)
        for step in range(max((len(f) for f in fragments), default=0)):
            for i, pieces in enumerate(fragments):
                if step < len(pieces):
                    frag(i, pieces[step])
    else:
        for i, call in enumerate(calls):
            opener(i, call)
            for piece in fragments[i]:
                frag(i, piece)
    c.chunk({}, "tool_calls")
    return c.finish(usage if usage is not None else openai_chat_usage(30, 40), done)


def openai_chat_error_chunk(
    message: str = "The server had an error while processing your request. Sorry about that!",
    type: str = "server_error",
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    """In-band error event: ``data: {"error": {...}}`` (the SDK raises APIError)."""
    return sse_data({"error": {"message": message, "type": type, "param": param, "code": code}})


def openai_chat_midstream_error(text_deltas: Sequence[str] = ("Partial", " answer"), **error: Any) -> list[bytes]:
    """Some text, then an in-band error chunk, and no ``[DONE]``."""
    chunks = openai_chat_text(text_deltas, include_usage=False, done=False)[:-1]  # drop finish chunk
    return [*chunks, openai_chat_error_chunk(**error)]


# ============================================================ OpenAI Responses


def openai_responses_usage(
    input_tokens: int = 36,
    output_tokens: int = 87,
    *,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_tokens: int | None = None,
) -> dict[str, Any]:
    """``ResponseUsage`` with ``input_tokens_details``/``output_tokens_details``.

    ``cache_write_tokens`` is a newer ``input_tokens_details`` field (required
    by openai-python 3.x models, absent from older docs); omitted when None.
    """
    details: dict[str, Any] = {"cached_tokens": cached_tokens}
    if cache_write_tokens is not None:
        details["cache_write_tokens"] = cache_write_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": details,
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


class _ResponsesWriter:
    """Emits ``event:``/``data:`` pairs with a running ``sequence_number``."""

    def __init__(self) -> None:
        self.seq = 0
        self.out: list[bytes] = []

    def emit(self, type_: str, **fields: Any) -> None:
        payload = {"type": type_, **fields, "sequence_number": self.seq}
        self.seq += 1
        self.out.append(sse_event(type_, payload))


def _response_obj(
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    error: dict[str, Any] | None = None,
    text_format: dict[str, Any] | None = None,
    reasoning_effort: str | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning_effort, "summary": "auto" if reasoning_effort else None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": text_format or {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def openai_responses_stream(
    text_deltas: Sequence[str] = ("Hello", ",", " world", "!"),
    *,
    reasoning_summary_deltas: Sequence[str] = (),
    function_calls: Sequence[ToolCall] = (),
    usage: dict[str, Any] | None = None,
    model: str = "gpt-4.1-mini-2025-04-14",
    response_id: str = "resp_wire0001",
    created_at: int = 1_700_000_000,
    text_format: dict[str, Any] | None = None,
) -> list[bytes]:
    """Full Responses stream, output items in order: reasoning, message, function calls.

    Sequence: response.created, response.in_progress, then per item
    output_item.added → (summary part / content part / arguments deltas) →
    output_item.done, and finally response.completed with the full output and
    usage.  Items with no content are omitted (empty ``text_deltas`` = no
    message item).
    """
    w = _ResponsesWriter()
    effort = "medium" if reasoning_summary_deltas else None
    w.emit(
        "response.created",
        response=_response_obj(response_id, model, created_at, "in_progress", [], None, None, text_format, effort),
    )
    w.emit(
        "response.in_progress",
        response=_response_obj(response_id, model, created_at, "in_progress", [], None, None, text_format, effort),
    )
    output: list[dict[str, Any]] = []

    if reasoning_summary_deltas:
        idx, item_id = len(output), "rs_wire0001"
        summary = "".join(reasoning_summary_deltas)
        w.emit("response.output_item.added", output_index=idx, item={"id": item_id, "type": "reasoning", "summary": []})
        part0 = {"type": "summary_text", "text": ""}
        w.emit("response.reasoning_summary_part.added", item_id=item_id, output_index=idx, summary_index=0, part=part0)
        for piece in reasoning_summary_deltas:
            w.emit(
                "response.reasoning_summary_text.delta", item_id=item_id, output_index=idx, summary_index=0, delta=piece
            )
        w.emit("response.reasoning_summary_text.done", item_id=item_id, output_index=idx, summary_index=0, text=summary)
        part = {"type": "summary_text", "text": summary}
        w.emit("response.reasoning_summary_part.done", item_id=item_id, output_index=idx, summary_index=0, part=part)
        item = {"id": item_id, "type": "reasoning", "summary": [part]}
        w.emit("response.output_item.done", output_index=idx, item=item)
        output.append(item)

    if text_deltas:
        idx, item_id = len(output), "msg_wire0001"
        text = "".join(text_deltas)
        w.emit(
            "response.output_item.added",
            output_index=idx,
            item={"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
        )
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        w.emit("response.content_part.added", item_id=item_id, output_index=idx, content_index=0, part=empty)
        for piece in text_deltas:
            w.emit(
                "response.output_text.delta",
                item_id=item_id,
                output_index=idx,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        w.emit("response.output_text.done", item_id=item_id, output_index=idx, content_index=0, text=text, logprobs=[])
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        w.emit("response.content_part.done", item_id=item_id, output_index=idx, content_index=0, part=part)
        item = {"id": item_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
        w.emit("response.output_item.done", output_index=idx, item=item)
        output.append(item)

    for n, call in enumerate(function_calls):
        idx, item_id = len(output), f"fc_wire{n:04d}"
        base = {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name}
        w.emit("response.output_item.added", output_index=idx, item={**base, "status": "in_progress", "arguments": ""})
        for piece in split_text(call.arguments, call.fragment):
            w.emit("response.function_call_arguments.delta", item_id=item_id, output_index=idx, delta=piece)
        w.emit("response.function_call_arguments.done", item_id=item_id, output_index=idx, arguments=call.arguments)
        item = {**base, "status": "completed", "arguments": call.arguments}
        w.emit("response.output_item.done", output_index=idx, item=item)
        output.append(item)

    final_usage = usage if usage is not None else openai_responses_usage()
    w.emit(
        "response.completed",
        response=_response_obj(
            response_id, model, created_at, "completed", output, final_usage, None, text_format, effort
        ),
    )
    return w.out


def openai_responses_text(text_deltas: Sequence[str] = ("Hello", ",", " world", "!"), **kw: Any) -> list[bytes]:
    """Plain text answer (one message item)."""
    return openai_responses_stream(text_deltas, **kw)


def openai_responses_reasoning(
    summary_deltas: Sequence[str] = ("**Thinking**", " about", " it."),
    text_deltas: Sequence[str] = ("The answer", " is 4."),
    *,
    usage: dict[str, Any] | None = None,
    **kw: Any,
) -> list[bytes]:
    """A reasoning item with a streamed summary, then the text answer."""
    usage = usage if usage is not None else openai_responses_usage(20, 150, cached_tokens=8, reasoning_tokens=128)
    return openai_responses_stream(text_deltas, reasoning_summary_deltas=summary_deltas, usage=usage, **kw)


def openai_responses_function_call(calls: Sequence[ToolCall] = DEFAULT_TOOL_CALLS, **kw: Any) -> list[bytes]:
    """Function-call items only (no message), arguments streamed in fragments."""
    return openai_responses_stream((), function_calls=calls, **kw)


def openai_responses_structured(
    obj: Any = None,
    *,
    fragment: int = 6,
    schema_name: str = "answer",
    **kw: Any,
) -> list[bytes]:
    """Structured output: the JSON document arrives as ``output_text`` deltas."""
    obj = obj if obj is not None else {"city": "Paris", "temperature_c": 21, "tags": ["sunny", "mild"]}
    text = json.dumps(obj, separators=(",", ":"))
    fmt = {"type": "json_schema", "name": schema_name, "strict": True, "schema": {"type": "object"}}
    return openai_responses_stream(split_text(text, fragment), text_format=fmt, **kw)


def openai_responses_error(
    message: str = "The server had an error while processing your request.",
    code: str | None = "server_error",
    param: str | None = None,
    *,
    after_text: Sequence[str] = (),
) -> list[bytes]:
    """created / in_progress, optional partial text deltas, then ``event: error``."""
    full = openai_responses_stream(after_text or ("x",))
    w = _ResponsesWriter()
    # keep created + in_progress (+ item/part added + deltas when after_text)
    keep = 2 + (2 + len(after_text) if after_text else 0)
    w.out, w.seq = full[:keep], keep
    w.emit("error", code=code, message=message, param=param)
    return w.out


def openai_responses_failed(
    message: str = "The model failed to generate a response.",
    code: str = "server_error",
    *,
    response_id: str = "resp_wire0002",
    model: str = "gpt-4.1-mini-2025-04-14",
    created_at: int = 1_700_000_000,
) -> list[bytes]:
    """created / in_progress, then ``response.failed`` with ``response.error``."""
    w = _ResponsesWriter()
    w.emit("response.created", response=_response_obj(response_id, model, created_at, "in_progress", [], None))
    w.emit("response.in_progress", response=_response_obj(response_id, model, created_at, "in_progress", [], None))
    err = {"code": code, "message": message}
    w.emit("response.failed", response=_response_obj(response_id, model, created_at, "failed", [], None, err))
    return w.out


# ========================================================== Anthropic Messages


@dataclass(frozen=True)
class AText:
    """A ``text`` content block streamed as ``text_delta`` events."""

    deltas: Sequence[str] = ("Hello", ", world", "!")


@dataclass(frozen=True)
class AThinking:
    """A ``thinking`` block: ``thinking_delta`` events then one ``signature_delta``."""

    deltas: Sequence[str] = ("Let me think", " step by step.")
    signature: str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


@dataclass(frozen=True)
class AToolUse:
    """A ``tool_use`` block whose ``input`` arrives as ``input_json_delta`` fragments."""

    name: str = "get_weather"
    input_json: str = '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    id: str = "toolu_wire01A09q90qw90lq917835lq9"
    fragment: int = 9


def anthropic_stream(
    blocks: Sequence[AText | AThinking | AToolUse] = (AText(),),
    *,
    model: str = "claude-haiku-4-5-20251001",
    message_id: str = "msg_wire014p7gG3wDgGV9EUtLvnow3U",
    input_tokens: int = 25,
    output_tokens: int = 15,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    stop_reason: str | None = None,
    ping: bool = True,
    ping_every: int = 0,
    stop: bool = True,
) -> list[bytes]:
    """message_start, [ping], per block start/delta*/stop, message_delta, message_stop.

    ``stop_reason`` defaults to ``tool_use`` when a tool block is present,
    else ``end_turn``.  ``ping_every=N`` interleaves a ``ping`` every N deltas.
    """
    out: list[bytes] = []
    out.append(
        sse_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": input_tokens,
                        "cache_creation_input_tokens": cache_creation_input_tokens,
                        "cache_read_input_tokens": cache_read_input_tokens,
                        "output_tokens": 1,
                        "service_tier": "standard",
                    },
                },
            },
        )
    )
    deltas_sent = 0

    def delta(index: int, d: dict[str, Any]) -> None:
        nonlocal deltas_sent
        out.append(sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}))
        deltas_sent += 1
        if ping_every and deltas_sent % ping_every == 0:
            out.append(sse_event("ping", {"type": "ping"}))

    for index, block in enumerate(blocks):
        if isinstance(block, AText):
            start: dict[str, Any] = {"type": "text", "text": ""}
        elif isinstance(block, AThinking):
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
        out.append(
            sse_event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        )
        if index == 0 and ping:
            out.append(sse_event("ping", {"type": "ping"}))
        if isinstance(block, AText):
            for piece in block.deltas:
                delta(index, {"type": "text_delta", "text": piece})
        elif isinstance(block, AThinking):
            for piece in block.deltas:
                delta(index, {"type": "thinking_delta", "thinking": piece})
            delta(index, {"type": "signature_delta", "signature": block.signature})
        else:
            delta(index, {"type": "input_json_delta", "partial_json": ""})
            for piece in split_text(block.input_json, block.fragment):
                delta(index, {"type": "input_json_delta", "partial_json": piece})
        out.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))

    if stop_reason is None:
        stop_reason = "tool_use" if any(isinstance(b, AToolUse) for b in blocks) else "end_turn"
    out.append(
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    if stop:
        out.append(sse_event("message_stop", {"type": "message_stop"}))
    return out


def anthropic_text(deltas: Sequence[str] = ("Hello", ", world", "!"), **kw: Any) -> list[bytes]:
    """One text block."""
    return anthropic_stream((AText(tuple(deltas)),), **kw)


def anthropic_thinking(
    thinking: Sequence[str] = ("Let me think", " step by step."),
    text: Sequence[str] = ("The answer", " is 4."),
    *,
    signature: str = AThinking.signature,
    **kw: Any,
) -> list[bytes]:
    """Extended thinking: a thinking block (with signature) then a text block."""
    return anthropic_stream((AThinking(tuple(thinking), signature), AText(tuple(text))), **kw)


def anthropic_tool_use(
    text: Sequence[str] = ("Okay, let me check.",),
    tools: Sequence[AToolUse] = (
        AToolUse(),
        AToolUse("get_time", '{"timezone": "America/Los_Angeles"}', id="toolu_wire02B"),
    ),
    **kw: Any,
) -> list[bytes]:
    """A text block followed by tool_use blocks; stop_reason ``tool_use``."""
    blocks: list[AText | AThinking | AToolUse] = [AText(tuple(text))] if text else []
    return anthropic_stream((*blocks, *tools), **kw)


def anthropic_error_event(error_type: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    """In-band ``event: error`` (the SDK raises an APIStatusError from it)."""
    return sse_event("error", {"type": "error", "error": {"type": error_type, "message": message}})


def anthropic_overloaded_stream(deltas: Sequence[str] = ("Partial",), **kw: Any) -> list[bytes]:
    """message_start + partial text, then ``event: error`` / overloaded_error."""
    head = anthropic_text(deltas, stop=False, **kw)[:-2]  # drop content_block_stop + message_delta
    return [*head, anthropic_error_event()]


#: Anthropic error ``type`` by HTTP status (docs: "HTTP errors").
ANTHROPIC_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: at least one message is required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: claude-wire"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def anthropic_error_body(status: int = 529, *, request_id: str = "req_wire011CSHoEeqs5C35K2UUqR7Fy") -> bytes:
    """``{"type":"error","error":{"type","message"},"request_id"}`` for ``status``."""
    kind, message = ANTHROPIC_ERROR_TYPES.get(status, ANTHROPIC_ERROR_TYPES[500])
    return _dumps({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}).encode()


# ============================================================== Google Gemini


def _gemini_dumps(obj: Any) -> str:
    """Gemini's SSE payloads are single-line JSON with ``": "`` separators."""
    return json.dumps(obj, separators=(",", ": "), ensure_ascii=False)


def gemini_usage(
    prompt_tokens: int = 8,
    candidates_tokens: int = 12,
    *,
    thoughts_tokens: int | None = None,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """``usageMetadata``; ``totalTokenCount`` includes thoughts tokens."""
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": candidates_tokens}
    total = prompt_tokens + candidates_tokens + (thoughts_tokens or 0)
    usage["totalTokenCount"] = total
    if cached_tokens is not None:
        usage["cachedContentTokenCount"] = cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if cached_tokens is not None:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached_tokens}]
    if thoughts_tokens is not None:
        usage["thoughtsTokenCount"] = thoughts_tokens
    return usage


@dataclass(frozen=True)
class GeminiCall:
    """A ``functionCall`` part (Gemini sends name + whole ``args`` at once)."""

    name: str = "get_weather"
    args: dict[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    thought_signature: str | None = None


def gemini_stream(
    text_deltas: Sequence[str] = ("Hello", ", world", "!"),
    *,
    thought_deltas: Sequence[str] = (),
    function_calls: Sequence[GeminiCall] = (),
    usage: dict[str, Any] | None = None,
    model_version: str = "gemini-2.5-flash",
    response_id: str = "wireRespId0001",
    finish_reason: str = "STOP",
    newline: str = "\r\n",
) -> list[bytes]:
    """One ``data:`` event per part: thoughts (``thought: true``), text, function calls.

    Every chunk repeats ``modelVersion``/``responseId`` and a running
    ``usageMetadata`` (prompt + total only); the last chunk carries
    ``finishReason`` and the full usage.  ``newline="\\n"`` gives LF framing.
    """
    final_usage = usage if usage is not None else gemini_usage(thoughts_tokens=24 if thought_deltas else None)
    parts: list[dict[str, Any]] = [{"text": t, "thought": True} for t in thought_deltas]
    parts += [{"text": t} for t in text_deltas]
    for call in function_calls:
        p: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.args}}
        if call.thought_signature:
            p["thoughtSignature"] = call.thought_signature
        parts.append(p)
    if not parts:
        parts = [{"text": ""}]
    out: list[bytes] = []
    running = {"promptTokenCount": final_usage.get("promptTokenCount", 0)}
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        cand: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
        if last:
            cand["finishReason"] = finish_reason
        cand["index"] = 0
        u = final_usage if last else {**running, "totalTokenCount": running["promptTokenCount"]}
        obj = {"candidates": [cand], "usageMetadata": u, "modelVersion": model_version, "responseId": response_id}
        out.append(f"data: {_gemini_dumps(obj)}{newline}{newline}".encode())
    return out


def gemini_text(text_deltas: Sequence[str] = ("Hello", ", world", "!"), **kw: Any) -> list[bytes]:
    """Plain text answer."""
    return gemini_stream(text_deltas, **kw)


def gemini_thinking(
    thought_deltas: Sequence[str] = ("**Planning**\n\nI will add the numbers.",),
    text_deltas: Sequence[str] = ("2 + 2", " = 4"),
    **kw: Any,
) -> list[bytes]:
    """Thought-summary parts (``thought: true``) followed by answer text."""
    return gemini_stream(text_deltas, thought_deltas=thought_deltas, **kw)


def gemini_function_call(
    calls: Sequence[GeminiCall] = (
        GeminiCall(thought_signature="d2lyZS10aG91Z2h0LXNpZ25hdHVyZQ=="),
        GeminiCall("get_time", {"timezone": "Europe/Paris"}),
    ),
    text_deltas: Sequence[str] = (),
    **kw: Any,
) -> list[bytes]:
    """``functionCall`` parts; the finish reason is still ``STOP``."""
    return gemini_stream(text_deltas, function_calls=calls, **kw)


#: Google RPC ``status`` by HTTP code.
GEMINI_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
    404: ("NOT_FOUND", "models/gemini-wire is not found for API version v1beta."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def gemini_error_body(status: int = 429, message: str | None = None) -> bytes:
    """``{"error": {"code","message","status"}}``, pretty-printed as Google sends it."""
    rpc, default = GEMINI_STATUS.get(status, GEMINI_STATUS[500])
    return (
        json.dumps({"error": {"code": status, "message": message or default, "status": rpc}}, indent=2) + "\n"
    ).encode()
