"""Invokers: one per provider, all built on `BaseLMInvoker`; `build_lm_invoker` picks one by id.

Provider modules (and their SDKs) are imported only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..retry import RetryConfig
from .base import BaseLMInvoker

if TYPE_CHECKING:
    from .anthropic import AnthropicLMInvoker
    from .azure_openai import AzureOpenAILMInvoker, AzureOpenAIResponsesLMInvoker
    from .bedrock import BedrockLMInvoker
    from .google import GoogleLMInvoker
    from .langchain import LangChainLMInvoker
    from .litellm import LiteLLMLMInvoker
    from .local import LocalLMInvoker
    from .ollama import OllamaLMInvoker
    from .openai_chat import OpenAIChatCompletionsLMInvoker, OpenAICompatibleLMInvoker
    from .openai_responses import OpenAILMInvoker
    from .xai import XAILMInvoker

__all__ = [
    "BaseLMInvoker",
    "build_lm_invoker",
    "LocalLMInvoker",
    "OpenAILMInvoker",
    "OpenAIChatCompletionsLMInvoker",
    "OpenAICompatibleLMInvoker",
    "AnthropicLMInvoker",
    "GoogleLMInvoker",
    "AzureOpenAILMInvoker",
    "AzureOpenAIResponsesLMInvoker",
    "BedrockLMInvoker",
    "XAILMInvoker",
    "OllamaLMInvoker",
    "LiteLLMLMInvoker",
    "LangChainLMInvoker",
    "PROVIDERS",
]

# class name -> module
_LAZY = {
    "LocalLMInvoker": ".local",
    "OpenAILMInvoker": ".openai_responses",
    "OpenAIChatCompletionsLMInvoker": ".openai_chat",
    "OpenAICompatibleLMInvoker": ".openai_chat",
    "AnthropicLMInvoker": ".anthropic",
    "GoogleLMInvoker": ".google",
    "AzureOpenAILMInvoker": ".azure_openai",
    "AzureOpenAIResponsesLMInvoker": ".azure_openai",
    "BedrockLMInvoker": ".bedrock",
    "XAILMInvoker": ".xai",
    "OllamaLMInvoker": ".ollama",
    "LiteLLMLMInvoker": ".litellm",
    "LangChainLMInvoker": ".langchain",
}

#: provider prefix of a model id -> invoker class name
PROVIDERS: dict[str, str] = {
    "local": "LocalLMInvoker",
    "openai": "OpenAILMInvoker",
    "openai-chat": "OpenAIChatCompletionsLMInvoker",
    "openai-chat-completions": "OpenAIChatCompletionsLMInvoker",
    "openai-compatible": "OpenAICompatibleLMInvoker",
    "anthropic": "AnthropicLMInvoker",
    "google": "GoogleLMInvoker",
    "azure-openai": "AzureOpenAILMInvoker",
    "azure-openai-responses": "AzureOpenAIResponsesLMInvoker",
    "bedrock": "BedrockLMInvoker",
    "xai": "XAILMInvoker",
    "ollama": "OllamaLMInvoker",
    "litellm": "LiteLLMLMInvoker",
    "langchain": "LangChainLMInvoker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def build_lm_invoker(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    retry_config: RetryConfig | None = None,
    **kwargs: Any,
) -> BaseLMInvoker:
    """Build an invoker from `"provider/model"`.

    `credentials` is the API key (default: the provider's environment variable or `.env`);
    `config` holds provider options such as `base_url` (every provider; the endpoint for Azure
    and Bedrock), `api_version` (Azure), `region` (Bedrock), `vertexai`/`project`/`location`
    (Google on Vertex AI), `default_hyperparameters`, `n_ctx`.
    GLLM's spelling (`gllm-inference`) `openai/<base_url>:<model>` means an OpenAI-compatible endpoint.
    """
    if not isinstance(model_id, str) or "/" not in model_id:
        raise ConfigurationError(
            f"model id {model_id!r} is not of the form 'provider/model'; known providers: "
            f"{', '.join(PROVIDERS)} (e.g. 'local/smollm2-135m', 'openai/gpt-4.1-nano')"
        )
    provider, model = model_id.split("/", 1)
    options: dict[str, Any] = dict(config or {})
    options.update(kwargs)
    if provider == "openai" and (model.startswith("http://") or model.startswith("https://")):
        base_url, sep, name = model.rpartition(":")
        if not sep or not name or base_url.endswith(("http", "https")):
            raise ConfigurationError(
                f"model id {model_id!r}: write an OpenAI-compatible endpoint as 'openai/<base_url>:<model>'"
            )
        provider, model = "openai-compatible", name
        options.setdefault("base_url", base_url)
    cls_name = PROVIDERS.get(provider)
    if cls_name is None:
        raise ConfigurationError(
            f"unknown provider {provider!r} in model id {model_id!r}; known providers: {', '.join(PROVIDERS)}"
        )
    if not model:
        raise ConfigurationError(f"model id {model_id!r} names no model after '{provider}/'")
    cls = __getattr__(cls_name)
    if credentials is not None:
        options["api_key"] = credentials
    if retry_config is not None:
        options["retry_config"] = retry_config
    try:
        return cls(model_name=model, **options)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ConfigurationError(f"bad config for {cls_name}: {exc}") from exc
