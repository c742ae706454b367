"""The four cloud providers as the wire tests drive them: model id, URL and fixtures per capability.

Shared by tests/test_providers.py and tests/test_faults.py (test modules do not import each
other). Each `P` says how to build one provider's invoker against a `WireServer` and which
documented wire stream to replay for text, thinking, tool calls, structured output and errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmstream import build_lm_invoker
from lmstream.invokers.base import BaseLMInvoker
from tests.wire import fixtures as fx
from tests.wire.server import WireServer

__all__ = ["KEY", "NAMES", "PROVIDERS", "STRUCT", "TEXT", "THINK", "WEATHER", "P", "invoker"]

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


def _chat_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.openai_chat_tool_calls([fx.ToolCall(n, json.dumps(a), id=i, fragment=5) for n, a, i in calls])


def _resp_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.openai_responses_function_call([fx.ToolCall(n, json.dumps(a), id=i, fragment=5) for n, a, i in calls])


def _anth_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.anthropic_tool_use(text=(), tools=[fx.AToolUse(n, json.dumps(a), id=i, fragment=4) for n, a, i in calls])


def _gem_tools(calls: list[tuple[str, dict[str, Any], str]]) -> list[bytes]:
    return fx.gemini_function_call([fx.GeminiCall(n, a) for n, a, _ in calls])


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
    ),
}
NAMES = list(PROVIDERS)


def invoker(p: P, srv: WireServer, **kw: Any) -> BaseLMInvoker:
    """`p`'s invoker, pointed at `srv`, with the planted key."""
    return build_lm_invoker(p.model_id, credentials=KEY, config={"base_url": p.url(srv.base_url)}, **kw)
