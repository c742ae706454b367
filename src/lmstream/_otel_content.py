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

#: lmstream provider prefix -> `gen_ai.provider.name` (well-known values where one applies)
PROVIDER_NAMES = {
    "openai": "openai",
    "openai-chat": "openai",
    "openai-chat-completions": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "azure-openai": "azure.ai.openai",
    "azure-openai-responses": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "xai": "x_ai",
    "local": "llama_cpp",  # the embedded model (llama.cpp in process); no well-known value
}

#: host of an OpenAI-compatible endpoint -> the provider it is
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

_DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com",
}

#: LiteLLM's own model prefixes -> the provider it routes to
_LITELLM = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "xai": "x_ai",
    "perplexity": "perplexity",
}

#: providers whose API takes the system prompt apart from the chat history
_SEPARATE_SYSTEM = frozenset({"openai", "anthropic", "google"})

_cache: dict[tuple[Any, ...], tuple[str, str | None, int | None]] = {}


def _default_url(invoker: Any, prefix: str) -> str | None:
    if prefix == "google" and getattr(invoker, "vertexai", False):
        location = getattr(invoker, "location", None)
        return f"https://{location + '-' if location else ''}aiplatform.googleapis.com"
    if prefix == "bedrock" and getattr(invoker, "region", None):
        return f"https://bedrock-runtime.{invoker.region}.amazonaws.com"
    return _DEFAULT_URLS.get(prefix)


def _lookup(invoker: Any) -> tuple[str, str | None, int | None]:
    vertex = getattr(invoker, "vertexai", None)
    key = (
        type(invoker),
        invoker.provider,
        getattr(invoker, "base_url", None),
        vertex,
        getattr(invoker, "location", None),
        getattr(invoker, "region", None),
        invoker.model_name if invoker.provider == "litellm" else None,
    )
    hit = _cache.get(key)
    if hit is not None:
        return hit
    prefix = invoker.provider
    url = getattr(invoker, "base_url", None) or _default_url(invoker, prefix)
    host: str | None = None
    port: int | None = None
    if url and prefix != "local":
        parts = urlsplit(url)
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
        except ValueError:
            port = None
    name = PROVIDER_NAMES.get(prefix)
    if host and (name is None or prefix == "google"):  # learn the provider from the endpoint
        name = _HOSTS.get(host) or next((n for s, n in _HOST_SUFFIXES if host.endswith(s)), None) or name
    if prefix == "google" and vertex:
        name = "gcp.vertex_ai"
    if prefix == "litellm":  # "anthropic/claude-..." goes to Anthropic
        name = _LITELLM.get(str(invoker.model_name).split("/", 1)[0]) if "/" in invoker.model_name else None
    if name is None:
        # an OpenAI-compatible server speaks OpenAI's API: the conventions name the API's flavour
        name = "openai" if prefix.startswith("openai") else prefix
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
    separate = invoker.provider in _SEPARATE_SYSTEM
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
