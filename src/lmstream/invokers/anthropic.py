"""Anthropic Messages API through the official `anthropic` SDK, streamed.

The SDK builds the request, authenticates and raises typed errors; lmstream turns its raw
stream events (message_start, content_block_*, message_delta, message_stop) into deltas.
SDK retries are off: lmstream retries only before the first token.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from .. import _json
from ..errors import ConfigurationError, ProviderError
from ..prompt import Message
from ..types import Attachment, ToolCall, ToolResult
from ._http import resolve_api_key
from ._sdk import map_sdk_error, with_idle_timeout
from .base import BaseLMInvoker, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta, _is_int

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
        elif isinstance(c, ToolCall):
            out.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
        elif isinstance(c, ToolResult):
            out.append({"type": "tool_result", "tool_use_id": c.id, "content": c.output, "is_error": c.is_error})
        elif isinstance(c, Attachment):
            kind = "image" if c.mime_type.startswith("image/") else "document"
            out.append(
                {
                    "type": kind,
                    "source": {"type": "base64", "media_type": c.mime_type, "data": base64.b64encode(c.data).decode()},
                }
            )
    return out


def to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text apart; tool results travel in user turns; adjacent same-role turns merge."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


class AnthropicLMInvoker(BaseLMInvoker):
    """`anthropic/<model>`. Thinking: `hyperparameters={"thinking": {"type": "enabled", "budget_tokens": N}}`."""

    provider: ClassVar[str] = "anthropic"
    extra_params: ClassVar[dict[str, Any]] = {
        "top_k": (_is_int, "an int"),
        "thinking": (lambda v: isinstance(v, dict), "a dict such as {'type': 'enabled', 'budget_tokens': 2048}"),
        "tool_choice": (lambda v: isinstance(v, dict), "a dict"),
        "metadata": (lambda v: isinstance(v, dict), "a dict"),
        "service_tier": (lambda v: isinstance(v, str), "a string"),
    }
    default_max_tokens = 4096

    def __init__(
        self,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        default_hyperparameters: dict[str, Any] | None = None,
        retry_config: Any = None,
        tools: Any = None,
        response_schema: Any = None,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            model_name,
            api_key=resolve_api_key(api_key, ("ANTHROPIC_API_KEY",), "anthropic"),
            base_url=base_url,
            default_hyperparameters=default_hyperparameters,
            retry_config=retry_config,
            tools=tools,
            response_schema=response_schema,
        )
        self._connect_timeout = connect_timeout
        self._client: Any = None
        self._loop: Any = None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()

    def _get_client(self) -> Any:

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            try:
                import anthropic
            except ImportError as exc:
                raise ConfigurationError(
                    "the anthropic SDK is not installed; run: pip install 'lmstream[anthropic]'"
                ) from exc
            timeout = anthropic.Timeout(
                connect=self._connect_timeout, read=self.retry_config.idle_timeout, write=60.0, pool=60.0
            )
            kwargs: dict[str, Any] = {"api_key": self._api_key, "max_retries": 0, "timeout": timeout}
            if self.base_url:
                kwargs["base_url"] = self.base_url
            self._client = anthropic.AsyncAnthropic(**kwargs)
            self._loop = loop
        return self._client

    def _request(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
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
        if self.response_schema is not None:
            # Instructed JSON, validated on arrival (portable across Claude models).
            system = (system + "\n\n" if system else "") + (
                "Answer with only a JSON value that matches this JSON schema, no prose, no code fence:\n"
                + _json.dumps(self.response_schema)
            )
        if system:
            req["system"] = system
        if self.tools:
            req["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in self.tools
            ]
        return req

    async def _stream(self, messages: list[Message], params: dict[str, Any]) -> AsyncIterator[Any]:
        client = self._get_client()
        req = self._request(messages, dict(params))
        try:
            stream = await client.messages.create(**req)
        except Exception as exc:
            raise map_sdk_error(self.provider, exc) from None
        kinds: dict[int, str] = {}
        stop: str | None = None
        try:
            async for ev in with_idle_timeout(stream.__aiter__(), self.retry_config.idle_timeout, self.provider):
                t = ev.type
                if t == "content_block_delta":
                    d = ev.delta
                    dt = d.type
                    if dt == "text_delta":
                        yield d.text
                    elif dt == "thinking_delta":
                        yield ThinkingDelta(d.thinking)
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
                    yield FinishDelta(stop or "stop")
                    return
                elif t == "error":
                    err = getattr(ev, "error", None)
                    raise ProviderError(
                        f"in-band error: {getattr(err, 'message', err)}",
                        provider=self.provider,
                        retryable=getattr(err, "type", "") in ("overloaded_error", "api_error"),
                    )
        except (ProviderError, GeneratorExit):
            raise
        except Exception as exc:
            mapped = map_sdk_error(self.provider, exc)
            if mapped is exc:
                raise
            raise mapped from None
        finally:
            await stream.close()
