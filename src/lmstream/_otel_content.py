"""lmstream's values in the GenAI conventions' vocabulary: provider names, server address,
and the JSON shapes of messages and tool definitions (recorded only on opt-in).

No OpenTelemetry import: plain data, so it is cheap to test and to reuse.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .prompt import Message
from .types import Attachment, LMOutput, ThinkingBlock, ToolCall, ToolResult

__all__ = ["input_messages", "output_messages", "provider_name", "server_of", "tool_definitions"]

#: host of an endpoint -> the provider it is (for invokers whose class lets the host say:
#: `tracing_name_from_host`, e.g. an OpenAI-compatible server)
_HOSTS = {
    "api.openai.com": "openai",
    "api.deepseek.com": "deepseek",
    "api.groq.com": "groq",
    "api.x.ai": "x_ai",
    "api.mistral.ai": "mistral_ai",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot_ai",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "generativelanguage.googleapis.com": "gcp.gemini",
}
_HOST_SUFFIXES = (("aiplatform.googleapis.com", "gcp.vertex_ai"), (".openai.azure.com", "azure.ai.openai"))

_cache: dict[tuple[Any, ...], tuple[str, str | None, int | None]] = {}


def _lookup(invoker: Any) -> tuple[str, str | None, int | None]:
    """(provider name, host, port), from what the invoker's class says of itself: its
    `endpoint()` (its `default_base_url` unless configured) and `traced_provider()`."""
    url = invoker.endpoint()
    key = (type(invoker), url, getattr(invoker, "vertexai", None), invoker.model_name)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    host: str | None = None
    port: int | None = None
    if url:
        parts = urlsplit(url)
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
        except ValueError:
            port = None
    host_says = (_HOSTS.get(host) or next((n for s, n in _HOST_SUFFIXES if host.endswith(s)), None)) if host else None
    name = invoker.traced_provider(host_says)
    if len(_cache) < 1024:
        _cache[key] = (name, host, port)
    return name, host, port


def provider_name(invoker: Any) -> str:
    """`gen_ai.provider.name` for an invoker."""
    return _lookup(invoker)[0]


def server_of(invoker: Any) -> tuple[str | None, int | None]:
    """`server.address`, `server.port` of the endpoint an invoker talks to (None in process)."""
    _, host, port = _lookup(invoker)
    return host, port


def _modality(mime: str) -> str:
    major = mime.split("/", 1)[0]
    return major if major in ("image", "audio", "video") else "document"


def _part(c: Any) -> dict[str, Any]:
    if isinstance(c, str):
        return {"type": "text", "content": c}
    if isinstance(c, ToolCall):
        return {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments}
    if isinstance(c, ToolResult):
        return {"type": "tool_call_response", "id": c.id, "response": c.output}
    if isinstance(c, ThinkingBlock):
        return {"type": "reasoning", "content": c.text}
    if isinstance(c, Attachment):
        return {
            "type": "blob",
            "modality": _modality(c.mime_type),
            "mime_type": c.mime_type,
            "content": base64.b64encode(c.data).decode("ascii"),
        }
    return {"type": type(c).__name__}


def input_messages(invoker: Any, messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(`gen_ai.system_instructions`, `gen_ai.input.messages`) as the conventions' JSON shapes.

    System text goes to the instructions for APIs that take it apart from the history
    (OpenAI Responses, Anthropic, Gemini); elsewhere it stays a `system` message.
    """
    separate = invoker.system_apart
    system: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system" and separate:
            system.extend(_part(c) for c in m.contents)
            continue
        history.append({"role": m.role, "parts": [_part(c) for c in m.contents]})
    return system, history


_FINISH = {"tool_calls": "tool_call"}  # lmstream's normalised reasons -> the schema's enum


def output_messages(output: LMOutput) -> list[dict[str, Any]]:
    """`gen_ai.output.messages`: the one assistant message of a model call."""
    parts: list[dict[str, Any]] = [_part(b) for b in output.thinking_blocks]
    if output.thinking and not output.thinking_blocks:
        parts.append({"type": "reasoning", "content": output.thinking})
    if output.text:
        parts.append(_part(output.text))
    parts.extend(_part(c) for c in output.tool_calls)
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if output.finish_reason:  # deprecated in the schema's latest draft, required by earlier ones
        message["finish_reason"] = _FINISH.get(output.finish_reason, output.finish_reason)
    return [message]


def tool_definitions(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """`gen_ai.tool.definitions` for the tools an invoker offers the model."""
    return [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters} for t in tools
    ]
