"""LiteLLM: one adapter for every provider LiteLLM routes to (`litellm/<litellm model id>`).

LiteLLM normalises each provider's stream to Chat Completions chunks; this adapter turns those
into lmstream deltas (text, `reasoning_content` as thinking, tool-call fragments, usage, finish
reason). LiteLLM's own retries are off: lmstream retries, only before the first token.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, ClassVar, Unpack

from ..errors import ConfigurationError, ProviderError
from ..prompt import Message
from ._sdk import with_idle_timeout
from ._sdk_errors import raise_mapped
from .base import BaseLMInvoker, CallParams, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from .openai_chat import ChatFiles, to_chat_messages
from .options import InvokerOptions
from .params import BOOL, DICT, INT, NUMBER, STRING, STRING_OR_DICT, ParamTable

__all__ = ["LiteLLMLMInvoker"]

#: LiteLLM reads OpenAI's content parts and translates them for the provider it routes to
_LITELLM_FILES = ChatFiles("LiteLLM")
_FINISH = {"function_call": "tool_calls", "end_turn": "stop", "max_tokens": "length"}


async def _import_litellm() -> ModuleType:
    """Import off the loop (it takes ~1 s); use the bundled model-cost map, not a network fetch."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        return await asyncio.to_thread(importlib.import_module, "litellm")
    except ImportError as exc:
        raise ConfigurationError("litellm is not installed; run: pip install 'lmstream[litellm]'") from exc


#: LiteLLM's model prefixes -> the `gen_ai.provider.name` of the provider it routes to
_ROUTES = {
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


class LiteLLMLMInvoker(BaseLMInvoker):
    """`litellm/<model>` where `<model>` is a LiteLLM id (`openai/gpt-4o-mini`,
    `bedrock/anthropic.claude-...`, `ollama_chat/llama3.2`, ...).

    Credentials come from `api_key=` or the variables LiteLLM reads for that provider
    (`OPENAI_API_KEY`, ...); `base_url` becomes LiteLLM's `api_base`; `api_version` is passed on
    (Azure). Any other LiteLLM argument goes in `litellm_params={...}`.
    """

    provider: ClassVar[str] = "litellm"
    billed_as: ClassVar[str | None] = "litellm"  # genai-prices reads the provider from the model's own prefix
    extra_params: ClassVar[ParamTable] = {
        "top_k": INT,
        "frequency_penalty": NUMBER,
        "presence_penalty": NUMBER,
        "reasoning_effort": STRING,
        "thinking": DICT,
        "tool_choice": STRING_OR_DICT,
        "parallel_tool_calls": BOOL,
        "user": STRING,
        "extra_body": DICT,
    }

    def __init__(
        self,
        model_name: str,
        *,
        api_version: str | None = None,
        litellm_params: dict[str, Any] | None = None,
        **options: Unpack[InvokerOptions],
    ) -> None:
        super().__init__(model_name, **options)
        self.api_version = api_version
        self.litellm_params = dict(litellm_params or {})

    def traced_provider(self, host_says: str | None) -> str:
        """The provider LiteLLM routes to, named by the model's own prefix (`anthropic/...`)."""
        prefix, sep, _ = self.model_name.partition("/")
        return (_ROUTES.get(prefix) if sep else None) or self.provider

    def _request(self, messages: list[Message], params: CallParams) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model_name,
            "messages": to_chat_messages(messages, _LITELLM_FILES),
            "stream": True,
            "stream_options": {"include_usage": True},
            "num_retries": 0,
            "max_retries": 0,
        }
        if self._api_key:
            req["api_key"] = self._api_key
        if self.base_url:
            req["api_base"] = self.base_url
        if self.api_version:
            req["api_version"] = self.api_version
        req.update(params)
        if params.tools:
            req["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in params.tools
            ]
        if params.response_schema is not None:
            req["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": params.response_schema},
            }
        req.update(self.litellm_params)
        return req

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Any]:
        litellm = await _import_litellm()
        req = self._request(messages, params.copy())
        try:
            stream = await litellm.acompletion(**req)
        except Exception as exc:
            raise_mapped(self.provider, exc, "litellm")
        finish: str | None = None
        try:
            async for chunk in with_idle_timeout(stream.__aiter__(), self.retry_config.idle_timeout, self.provider):
                for choice in (chunk.choices or [])[:1]:
                    delta = choice.delta
                    if delta is not None:
                        reasoning = getattr(delta, "reasoning_content", None)
                        if reasoning:
                            yield ThinkingDelta(reasoning)
                        if delta.content:
                            yield delta.content
                        for tc in getattr(delta, "tool_calls", None) or []:
                            fn = tc.function
                            yield ToolCallDelta(
                                tc.index or 0,
                                tc.id,
                                getattr(fn, "name", None),
                                getattr(fn, "arguments", None) or "",
                            )
                    if choice.finish_reason:
                        finish = _FINISH.get(choice.finish_reason, choice.finish_reason)
                usage = getattr(chunk, "usage", None)
                if usage:
                    details = getattr(usage, "prompt_tokens_details", None)
                    out_details = getattr(usage, "completion_tokens_details", None)
                    yield UsageDelta(
                        usage.prompt_tokens,
                        usage.completion_tokens,
                        getattr(details, "cached_tokens", None),
                        getattr(out_details, "reasoning_tokens", None),
                    )
        except (ProviderError, GeneratorExit):
            raise
        except Exception as exc:
            raise_mapped(self.provider, exc, "litellm")
        finally:
            await stream.aclose()
        if finish is not None:
            yield FinishDelta(finish)
