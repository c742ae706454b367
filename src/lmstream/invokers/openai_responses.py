"""OpenAI Responses API (`openai/<model>`) through the official `openai` SDK, streamed.

Reasoning summaries stream as `thinking`; function-call argument fragments are assembled into
tool calls; structured output uses `text.format` json_schema. SDK retries are off: lmstream
retries only before the first token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

from .. import _json
from ..errors import ConfigurationError, ProviderError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._files import refuse
from ._sdk import SDKLMInvoker
from ._sdk_errors import ErrorTable, openai_table
from .base import CallParams, FileDelta, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .params import BOOL, DICT, STRING, STRING_OR_DICT, ParamTable, one_of

__all__ = ["OpenAILMInvoker"]


def responses_part(a: Attachment) -> dict[str, Any]:
    """One attachment as the Responses input part OpenAI documents: `input_image` (a data: URL
    or the URL itself), `input_file` (a PDF or a text file as `file_data`, or a `file_url`)."""
    if a.kind == "image":
        return {"type": "input_image", "image_url": a.data_url(), "detail": "auto"}
    if a.kind in ("pdf", "text"):
        name = a.filename or ("document.pdf" if a.kind == "pdf" else "document.txt")
        if a.url is not None:
            return {"type": "input_file", "file_url": a.url}
        return {"type": "input_file", "filename": name, "file_data": a.data_url()}
    raise refuse("the OpenAI Responses API", a, "For audio use openai-chat/ (Chat Completions' input_audio)")


_FORMATS = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "svg": "image/svg+xml",  # passed on as such: the page never renders SVG inline
}


def _image_type(b64: str, output_format: str | None) -> str:
    """A generated image's type: read from its first bytes (the format field is optional)."""
    from .. import _mime

    try:
        head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
    except (ValueError, binascii.Error):
        head = b""
    found = _mime.sniff(head)
    if found is not None and found.startswith("image/"):
        return found
    return _FORMATS.get(output_format or "", "application/octet-stream")


def to_responses_input(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text -> `instructions`; tool calls/results -> function_call(_output) items."""
    system: list[str] = []
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        parts: list[dict[str, Any]] = []
        for c in m.contents:
            if isinstance(c, str):
                if c:
                    kind = "output_text" if m.role == "assistant" else "input_text"
                    parts.append({"type": kind, "text": c})
            elif isinstance(c, Attachment):
                parts.append(responses_part(c))
        if parts:
            items.append({"role": "assistant" if m.role == "assistant" else "user", "content": parts})
        for c in m.contents:
            if isinstance(c, ToolCall):
                items.append(
                    {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": _json.dumps(c.arguments)}
                )
            elif isinstance(c, ToolResult):
                items.append({"type": "function_call_output", "call_id": c.id, "output": c.output})
    return "\n\n".join(system), items


class OpenAILMInvoker(SDKLMInvoker):
    """`openai/<model>`: the Responses API. Reasoning: `hyperparameters={"reasoning_effort": "low"}`."""

    provider: ClassVar[str] = "openai"
    billed_as: ClassVar[str | None] = "openai"
    tracing_name: ClassVar[str] = "openai"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    system_apart: ClassVar[bool] = True
    env_vars: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    sdk_module: ClassVar[str] = "openai"
    sdk_extra: ClassVar[str] = "openai"
    extra_params: ClassVar[ParamTable] = {
        "reasoning_effort": one_of("minimal", "low", "medium", "high", "none", expected="minimal/low/medium/high/none"),
        "reasoning_summary": one_of("auto", "concise", "detailed"),
        "parallel_tool_calls": BOOL,
        "tool_choice": STRING_OR_DICT,
        "store": BOOL,
        "user": STRING,
        "service_tier": STRING,
        "previous_response_id": STRING,
        #: the built-in image generation tool's options (`{}` for defaults, `{"partial_images": 2}`
        #: to stream previews): its images stream back as `file` events
        "image_generation": DICT,
    }

    def _make_client(self) -> Any:
        return self._sdk().AsyncOpenAI(**self._client_kwargs())

    def _request(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        instructions, items = to_responses_input(messages)
        req: dict[str, Any] = {"model": self.model_name, "input": items, "stream": True}
        if instructions:
            req["instructions"] = instructions
        if "max_tokens" in params:
            req["max_output_tokens"] = params.pop("max_tokens")
        if "stop" in params or "seed" in params:
            raise ConfigurationError("the Responses API has no 'stop' or 'seed'; use openai-chat/<model> for them")
        effort = params.pop("reasoning_effort", None)
        summary = params.pop("reasoning_summary", None)
        if effort or summary:
            req["reasoning"] = {k: v for k, v in (("effort", effort), ("summary", summary or "auto")) if v}
        image_tool = params.pop("image_generation", None)
        req.update(params)
        if image_tool is not None:
            req["tools"] = [{"type": "image_generation", **image_tool}]
        if params.tools:
            req.setdefault("tools", [])
            req["tools"] += [
                {
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                    "strict": False,
                }
                for t in params.tools
            ]
        if params.response_schema is not None:
            req["text"] = {
                "format": {"type": "json_schema", "name": "response", "schema": params.response_schema, "strict": False}
            }
        return req

    def _error_table(self) -> ErrorTable:
        return openai_table(self._sdk())

    async def _open(self, client: Any, messages: list[Message], params: CallParams) -> Any:
        return await client.responses.create(**self._request(messages, params))

    async def _translate(self, events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        async for ev in events:
            t = ev.type
            if t == "response.output_text.delta":
                yield ev.delta
            elif t == "response.reasoning_summary_text.delta" or t == "response.reasoning_text.delta":
                yield ThinkingDelta(ev.delta)
            elif t == "response.reasoning_summary_part.done":
                yield ThinkingDelta(end=True)
            elif t == "response.output_item.added":
                item = ev.item
                if item.type == "function_call":
                    yield ToolCallDelta(ev.output_index, item.call_id, item.name)
            elif t == "response.function_call_arguments.delta":
                yield ToolCallDelta(ev.output_index, arguments=ev.delta)
            elif t == "response.image_generation_call.partial_image":
                b64 = ev.partial_image_b64
                yield FileDelta(ev.item_id, _image_type(b64, None), data=b64, partial_index=ev.partial_image_index)
            elif t == "response.output_item.done" and getattr(ev.item, "type", None) == "image_generation_call":
                item = ev.item
                if item.result:
                    fmt = getattr(item, "output_format", None)
                    yield FileDelta(item.id, _image_type(item.result, fmt), data=item.result)
            elif t in ("response.completed", "response.incomplete"):
                resp = ev.response
                u = resp.usage
                if u is not None:
                    cached = getattr(u.input_tokens_details, "cached_tokens", None) if u.input_tokens_details else None
                    reasoning = (
                        getattr(u.output_tokens_details, "reasoning_tokens", None) if u.output_tokens_details else None
                    )
                    yield UsageDelta(u.input_tokens, u.output_tokens, cached, reasoning)
                reason = "stop"
                if t == "response.incomplete":
                    details = getattr(resp, "incomplete_details", None)
                    why = getattr(details, "reason", None)
                    reason = "length" if why == "max_output_tokens" else (why or "incomplete")
                yield FinishDelta(reason, getattr(resp, "id", None), getattr(resp, "model", None))
                return
            elif t == "response.failed":
                err = getattr(ev.response, "error", None)
                raise ProviderError(
                    f"response failed: {getattr(err, 'message', err)} ({getattr(err, 'code', '')})",
                    provider=self.provider,
                    retryable=getattr(err, "code", "") == "server_error",
                )
            elif t == "error":
                raise ProviderError(
                    f"in-band error: {getattr(ev, 'message', ev)} ({getattr(ev, 'code', '')})",
                    provider=self.provider,
                    retryable=False,
                )
