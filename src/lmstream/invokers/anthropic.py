"""Anthropic Messages API through the official `anthropic` SDK, streamed.

The SDK builds the request, authenticates and raises typed errors; lmstream turns its raw
stream events (message_start, content_block_*, message_delta, message_stop) into deltas.
SDK retries are off: lmstream retries only before the first token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar, Unpack

from .. import _json
from ..errors import ConfigurationError, ProviderError
from ..prompt import Message
from ..types import Attachment, ThinkingBlock, ToolCall, ToolResult
from ._files import refuse
from ._sdk import SDKLMInvoker, fit_keywords, split_turns
from ._sdk_errors import (
    ErrorTable,
    api_error,
    connection_error,
    malformed_error,
    status_error,
    timeout_error,
    transport_table,
)
from .base import CallParams, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .options import InvokerOptions
from .params import DICT, INT, STRING, Check, ParamTable

__all__ = ["AnthropicLMInvoker"]

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause",
}


def _blocks(m: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in m.contents:
        if isinstance(c, str):
            if c:
                out.append({"type": "text", "text": c})
        elif isinstance(c, ThinkingBlock):
            if c.signature:  # unsigned reasoning (another provider's) cannot be replayed here
                out.append({"type": "thinking", "thinking": c.text, "signature": c.signature})
        elif isinstance(c, ToolCall):
            out.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
        elif isinstance(c, ToolResult):
            out.append({"type": "tool_result", "tool_use_id": c.id, "content": c.output, "is_error": c.is_error})
        elif isinstance(c, Attachment):
            out.append(anthropic_block(c))
    return out


def anthropic_block(a: Attachment) -> dict[str, Any]:
    """An `image` block (base64 or URL source), or a `document` block: a PDF (base64 or URL
    source) or a text file (a `text` source), as Anthropic's Messages API documents them."""
    if a.kind in ("image", "pdf"):
        kind = "image" if a.kind == "image" else "document"
        if a.url is not None:
            return {"type": kind, "source": {"type": "url", "url": a.url}}
        return {"type": kind, "source": {"type": "base64", "media_type": a.mime_type, "data": a.base64()}}
    if a.kind == "text" and a.url is None:
        source = {"type": "text", "media_type": "text/plain", "data": a.text()}
        block: dict[str, Any] = {"type": "document", "source": source}
        if a.filename:
            block["title"] = a.filename
        return block
    raise refuse("Anthropic's Messages API", a)


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text apart; tool results travel in user turns; adjacent same-role turns merge."""
    return split_turns(messages, "assistant", _blocks, "content")


def _closed_objects(schema: Any) -> Any:
    """Anthropic's structured outputs want `additionalProperties: false` on every object."""
    if isinstance(schema, dict):
        out = {k: _closed_objects(v) for k, v in schema.items()}
        if out.get("type") == "object":
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_closed_objects(v) for v in schema]
    return schema


class AnthropicLMInvoker(SDKLMInvoker):
    """`anthropic/<model>`. Thinking: `hyperparameters={"thinking": {"type": "enabled", "budget_tokens": N}}`.

    Structured output uses Anthropic's native `output_config.format` (json_schema);
    `structured_output_mode="prompt"` instructs and validates instead, for models without it.
    """

    provider: ClassVar[str] = "anthropic"
    billed_as: ClassVar[str | None] = "anthropic"
    tracing_name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str | None] = "https://api.anthropic.com"
    system_apart: ClassVar[bool] = True
    #: a final assistant message is a prefill the answer continues (the Messages API's own rule)
    continues_prefix: ClassVar[bool] = True
    env_vars: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    sdk_module: ClassVar[str] = "anthropic"
    sdk_extra: ClassVar[str] = "anthropic"
    extra_params: ClassVar[ParamTable] = {
        "top_k": INT,
        "thinking": Check(DICT.test, "a dict such as {'type': 'enabled', 'budget_tokens': 2048}"),
        "tool_choice": DICT,
        "metadata": DICT,
        "service_tier": STRING,
    }
    default_max_tokens = 4096

    def accepts_prefix(self, prefix: str) -> bool:
        """The Messages API refuses a final assistant message that ends in whitespace."""
        return not prefix[-1:].isspace()

    def __init__(
        self,
        model_name: str,
        *,
        structured_output_mode: str = "native",
        connect_timeout: float = 10.0,
        **options: Unpack[InvokerOptions],
    ) -> None:
        if structured_output_mode not in ("native", "prompt"):
            raise ConfigurationError("structured_output_mode must be 'native' or 'prompt'")
        super().__init__(model_name, connect_timeout=connect_timeout, **options)
        self.structured_output_mode = structured_output_mode

    def _make_client(self) -> Any:
        return self._sdk().AsyncAnthropic(**self._client_kwargs())

    def _request(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        system, msgs = to_anthropic(messages)
        req: dict[str, Any] = {
            "model": self.model_name,
            "messages": msgs,
            "stream": True,
            "max_tokens": params.pop("max_tokens", self.default_max_tokens),
        }
        if "stop" in params:
            stop = params.pop("stop")
            req["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if "seed" in params:
            raise ConfigurationError("Anthropic does not support 'seed'; remove it from the hyperparameters")
        req.update(params)
        if params.response_schema is not None and self.structured_output_mode == "native":
            schema = _closed_objects(params.response_schema)
            req["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        elif params.response_schema is not None:
            # Instructed JSON, validated on arrival (for models without structured outputs).
            system = (system + "\n\n" if system else "") + (
                "Answer with only a JSON value that matches this JSON schema, no prose, no code fence:\n"
                + _json.dumps(params.response_schema)
            )
        if system:
            req["system"] = system
        if params.tools:
            req["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in params.tools
            ]
        return req

    def _error_table(self) -> ErrorTable:
        anthropic = self._sdk()
        return {
            **transport_table(),  # the SDK's HTTP stack (httpx2) raises raw mid-stream
            anthropic.APIStatusError: status_error,  # also `event: error` in a 200 stream
            anthropic.APITimeoutError: timeout_error,
            anthropic.APIConnectionError: connection_error,
            anthropic.APIResponseValidationError: malformed_error,
            anthropic.APIError: api_error,
        }

    async def _open(self, client: Any, messages: list[Message], params: CallParams) -> Any:
        create = client.messages.create
        return await create(**fit_keywords(create, self._request(messages, params)))

    async def _translate(self, events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        kinds: dict[int, str] = {}
        stop: str | None = None
        mid = mmodel = None
        async for ev in events:
            t = ev.type
            if t == "content_block_delta":
                d = ev.delta
                dt = d.type
                if dt == "text_delta":
                    yield d.text
                elif dt == "thinking_delta":
                    yield ThinkingDelta(d.thinking)
                elif dt == "signature_delta":
                    yield ThinkingDelta(signature=d.signature)
                elif dt == "input_json_delta":
                    yield ToolCallDelta(ev.index, arguments=d.partial_json)
            elif t == "content_block_start":
                block = ev.content_block
                kinds[ev.index] = block.type
                if block.type == "tool_use":
                    yield ToolCallDelta(ev.index, block.id, block.name)
                elif block.type == "text" and getattr(block, "text", ""):
                    yield block.text
            elif t == "content_block_stop":
                if kinds.get(ev.index) in ("thinking", "redacted_thinking"):
                    yield ThinkingDelta(end=True)
            elif t == "message_start":
                mid, mmodel = getattr(ev.message, "id", None), getattr(ev.message, "model", None)
                u = ev.message.usage
                cached = getattr(u, "cache_read_input_tokens", None) or 0
                yield UsageDelta(
                    (u.input_tokens or 0) + cached + (getattr(u, "cache_creation_input_tokens", None) or 0),
                    u.output_tokens,
                    cached,
                )
            elif t == "message_delta":
                if ev.delta.stop_reason:
                    stop = _STOP.get(ev.delta.stop_reason, ev.delta.stop_reason)
                if ev.usage is not None and ev.usage.output_tokens is not None:
                    yield UsageDelta(output_tokens=ev.usage.output_tokens)
            elif t == "message_stop":
                yield FinishDelta(stop, mid, mmodel)  # no stop_reason: cut short (the accumulator says so)
                return
            elif t == "error":
                err = getattr(ev, "error", None)
                raise ProviderError(
                    f"in-band error: {getattr(err, 'message', err)}",
                    provider=self.provider,
                    retryable=getattr(err, "type", "") in ("overloaded_error", "api_error"),
                )
