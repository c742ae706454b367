"""The cloud providers as the wire tests drive them: model id, URL and fixtures per capability.

Shared by tests/test_providers.py and tests/test_faults.py (test modules do not import each
other). Each `P` says how to build one provider's invoker against a `WireServer` and which
documented wire stream to replay for text, thinking, tool calls, structured output and errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker
from lmstream.invokers.base import BaseLMInvoker
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.server import WireServer

__all__ = [
    "get_time",
    "get_weather",
    "lmrp",
    "process",
    "FAULT_NAMES",
    "KEY",
    "NAMES",
    "PROVIDERS",
    "STRUCT",
    "TEXT",
    "THINK",
    "WEATHER",
    "P",
    "invoker",
]

KEY = "sk-wire-planted-key-0123456789"
TEXT = ("Here", " are", " some", " ideas", ".")
THINK = ("Let me", " think", ".")
WEATHER = {"city": "Paris", "unit": "c"}
STRUCT = {"city": "Paris", "temperature_c": 21, "tags": ["sunny", "mild"]}


@dataclass
class P:
    """How to build one provider's invoker and its wire fixtures."""

    model_id: str
    url: Callable[[str], str]
    text: Callable[[tuple[str, ...]], list[bytes]]
    thinking: Callable[[], list[bytes]]
    tools: Callable[[list[tuple[str, dict[str, Any], str]]], list[bytes]]
    structured: Callable[[dict[str, Any]], list[bytes]]
    path: str
    usage: tuple[int, int]
    error: Callable[[int], bytes]
    #: the wire format family (chat, responses, anthropic, gemini, bedrock): what tests decode
    wire: str = "chat"
    #: extra build_lm_invoker config (api_version, region, vertexai, ...)
    config: dict[str, Any] = field(default_factory=dict)
    #: run tests/test_faults.py's table for it (adapters over other libraries have their own rows)
    faults: bool = True


def _chat_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.openai_chat_tool_calls([fx.ToolCall(n, json.dumps(a), id=i, fragment=5) for n, a, i in calls])


def _resp_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.openai_responses_function_call([fx.ToolCall(n, json.dumps(a), id=i, fragment=5) for n, a, i in calls])


def _anth_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.anthropic_tool_use(text=(), tools=[fx.AToolUse(n, json.dumps(a), id=i, fragment=4) for n, a, i in calls])


def _gem_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.gemini_function_call([fx.GeminiCall(n, a) for n, a, _ in calls])


def _bedrock_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return es.bedrock_tool_use([es.BToolUse(n, json.dumps(a), id=i, fragment=5) for n, a, i in calls])


def _chat_like(model_id: str, url: Callable[[str], str], path: str, reasoning_field: str, **kw: Any) -> P:
    """A provider speaking Chat Completions (Azure, xAI, Ollama, LiteLLM's openai route)."""
    return P(
        model_id,
        url,
        lambda t: fx.openai_chat_text(t, usage=fx.openai_chat_usage(11, len(t))),
        lambda: fx.openai_chat_text(TEXT, reasoning_deltas=THINK, reasoning_field=reasoning_field),
        _chat_tools,
        lambda o: fx.openai_chat_text(_split(o)),
        path,
        (11, len(TEXT)),
        fx.openai_error_for,
        **kw,
    )


def _split(obj: dict[str, Any]) -> tuple[str, ...]:
    return tuple(fx.split_text(json.dumps(obj), 5))


PROVIDERS = {
    "openai-chat": P(
        "openai-chat/gpt-4o-mini",
        lambda u: u + "/v1",
        lambda t: fx.openai_chat_text(t, usage=fx.openai_chat_usage(11, len(t))),
        lambda: fx.openai_chat_text(TEXT, reasoning_deltas=THINK),
        _chat_tools,
        lambda o: fx.openai_chat_text(_split(o)),
        "/v1/chat/completions",
        (11, len(TEXT)),
        fx.openai_error_for,
    ),
    "openai": P(
        "openai/gpt-4.1-mini",
        lambda u: u + "/v1",
        lambda t: fx.openai_responses_text(t, usage=fx.openai_responses_usage(11, len(t))),
        lambda: fx.openai_responses_reasoning(THINK, TEXT),
        _resp_tools,
        lambda o: fx.openai_responses_structured(o, fragment=5),
        "/v1/responses",
        (11, len(TEXT)),
        fx.openai_error_for,
        wire="responses",
    ),
    "anthropic": P(
        "anthropic/claude-haiku-4-5",
        lambda u: u,
        lambda t: fx.anthropic_text(t, input_tokens=11, output_tokens=len(t)),
        lambda: fx.anthropic_thinking(THINK, TEXT),
        _anth_tools,
        lambda o: fx.anthropic_text(_split(o)),
        "/v1/messages",
        (11, len(TEXT)),
        lambda s: fx.anthropic_error_body(s),
        wire="anthropic",
    ),
    "google": P(
        "google/gemini-2.5-flash",
        lambda u: u,
        lambda t: fx.gemini_text(t, usage=fx.gemini_usage(11, len(t))),
        lambda: fx.gemini_thinking(THINK, TEXT),
        _gem_tools,
        lambda o: fx.gemini_text(_split(o)),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        (11, len(TEXT)),
        lambda s: fx.gemini_error_body(s),
        wire="gemini",
    ),
    "azure-openai": _chat_like(
        "azure-openai/my-gpt-4o-deployment",
        lambda u: u,  # the resource endpoint
        "/openai/deployments/my-gpt-4o-deployment/chat/completions",
        "reasoning_content",
        config={"api_version": "2024-10-21"},
    ),
    "azure-openai-responses": P(
        "azure-openai-responses/my-gpt-5-deployment",
        lambda u: u,
        lambda t: fx.openai_responses_text(t, usage=fx.openai_responses_usage(11, len(t))),
        lambda: fx.openai_responses_reasoning(THINK, TEXT),
        _resp_tools,
        lambda o: fx.openai_responses_structured(o, fragment=5),
        "/openai/v1/responses",
        (11, len(TEXT)),
        fx.openai_error_for,
        wire="responses",
    ),
    "xai": _chat_like("xai/grok-3-mini", lambda u: u + "/v1", "/v1/chat/completions", "reasoning_content"),
    "ollama": _chat_like("ollama/qwen3:0.6b", lambda u: u + "/v1", "/v1/chat/completions", "reasoning"),
    "litellm": _chat_like(
        "litellm/openai/gpt-4o-mini", lambda u: u + "/v1", "/v1/chat/completions", "reasoning_content", faults=False
    ),
    "vertex": P(
        "google/gemini-2.5-flash",
        lambda u: u,
        lambda t: fx.gemini_text(t, usage=fx.gemini_usage(11, len(t))),
        lambda: fx.gemini_thinking(THINK, TEXT),
        _gem_tools,
        lambda o: fx.gemini_text(_split(o)),
        "/v1beta1/projects/wire-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash"
        ":streamGenerateContent",
        (11, len(TEXT)),
        lambda s: fx.gemini_error_body(s),
        wire="gemini",
        config={"vertexai": True, "project": "wire-project", "location": "europe-west4"},
    ),
    "bedrock": P(
        "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0",
        lambda u: u,  # endpoint_url
        lambda t: es.bedrock_text(t, usage=(11, len(t))),
        lambda: es.bedrock_thinking(THINK, TEXT),
        _bedrock_tools,
        lambda o: es.bedrock_text(_split(o)),
        "/model/anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream",
        (11, len(TEXT)),
        es.bedrock_error_body,
        wire="bedrock",
        config={"region": "us-east-1"},
    ),
}
NAMES = list(PROVIDERS)


#: the providers tests/test_faults.py's table runs for (adapters over other libraries have their own rows)
FAULT_NAMES = [name for name, p in PROVIDERS.items() if p.faults]


def invoker(p: P, srv: WireServer, **kw: Any) -> BaseLMInvoker:
    """`p`'s invoker, pointed at `srv`, with the planted key."""
    config = {**p.config, "base_url": p.url(srv.base_url)}
    return build_lm_invoker(p.model_id, credentials=KEY, config=config, **kw)


async def process(lmrp: LMRequestProcessor[Any], **kw: Any) -> tuple[list[Any], Any]:
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(lmrp.process(event_emitter=emitter, **kw))
    events = [e async for e in emitter.stream()]
    try:
        result = await asyncio.wait_for(task, 10)
    except BaseException as exc:
        return events, exc
    return events, result


def lmrp(inv: BaseLMInvoker) -> LMRequestProcessor[Any]:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{q}"), inv)


def get_weather(city: str, unit: str = "c") -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: the city name
        unit: c or f
    """
    return {"city": city, "temp": 21 if unit == "c" else 70}


async def get_time(timezone: str) -> str:
    """Current time in a timezone."""
    await asyncio.sleep(0)
    return f"12:00 in {timezone}"
