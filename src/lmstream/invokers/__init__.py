"""Invokers: one per provider, all built on `BaseLMInvoker`; `build_lm_invoker` picks one by id.

`PROVIDER_MODULES` is the provider table: one line per provider module, naming the invoker
classes it defines. Each class carries the rest itself: its model-id prefix (`provider`,
`aliases`), its tracing name and its default URL; `PROVIDERS`, `lmstream.__all__` and the
tracing attributes are derived from them. Provider modules (and their SDKs) are imported only
when first used.

Modules: `base` (`BaseLMInvoker`: configuration and the `stream_deltas(messages, params)`
seam), one module per provider (`local`, `openai_responses`, `openai_chat`, `anthropic`,
`google`, `azure_openai`, `bedrock`, `xai`, `ollama`, `litellm`, `langchain`), `fallback`
(`FallbackLMInvoker`, `PooledLMInvoker`: members the engine switches among), `options` (the
constructor keywords, typed once), `params` (hyperparameter checks), and the shared plumbing:
`_http` (credentials, SSE reading, error mapping), `_sdk` and `_sdk_errors` (SDK-driven
providers and their exceptions), `_aws` (botocore's blocking stream on a thread), `_files`
(which attachments each wire takes), `_overflow` (each provider's "prompt too long" as one
error), `_llama/` (the embedded model's continuous-batching engine behind `local`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..retry import RetryConfig
from .base import BaseLMInvoker as BaseLMInvoker

#: module -> the invoker classes it defines (a new provider: its module, and one line here)
PROVIDER_MODULES: dict[str, tuple[str, ...]] = {
    "local": ("LocalLMInvoker",),
    "openai_responses": ("OpenAILMInvoker",),
    "openai_chat": ("OpenAIChatCompletionsLMInvoker", "OpenAICompatibleLMInvoker"),
    "anthropic": ("AnthropicLMInvoker",),
    "google": ("GoogleLMInvoker",),
    "azure_openai": ("AzureOpenAILMInvoker", "AzureOpenAIResponsesLMInvoker"),
    "bedrock": ("BedrockLMInvoker",),
    "xai": ("XAILMInvoker",),
    "ollama": ("OllamaLMInvoker",),
    "litellm": ("LiteLLMLMInvoker",),
    "langchain": ("LangChainLMInvoker",),
}

if TYPE_CHECKING:  # the same classes, for type checkers (tests/test_public_api.py keeps the two in step)
    from .anthropic import AnthropicLMInvoker as AnthropicLMInvoker
    from .azure_openai import AzureOpenAILMInvoker as AzureOpenAILMInvoker
    from .azure_openai import AzureOpenAIResponsesLMInvoker as AzureOpenAIResponsesLMInvoker
    from .bedrock import BedrockLMInvoker as BedrockLMInvoker
    from .google import GoogleLMInvoker as GoogleLMInvoker
    from .langchain import LangChainLMInvoker as LangChainLMInvoker
    from .litellm import LiteLLMLMInvoker as LiteLLMLMInvoker
    from .local import LocalLMInvoker as LocalLMInvoker
    from .ollama import OllamaLMInvoker as OllamaLMInvoker
    from .openai_chat import OpenAIChatCompletionsLMInvoker as OpenAIChatCompletionsLMInvoker
    from .openai_chat import OpenAICompatibleLMInvoker as OpenAICompatibleLMInvoker
    from .openai_responses import OpenAILMInvoker as OpenAILMInvoker
    from .xai import XAILMInvoker as XAILMInvoker

#: every provider's invoker class name, in table order
INVOKER_CLASSES: tuple[str, ...] = tuple(name for names in PROVIDER_MODULES.values() for name in names)
_MODULE_OF = {name: module for module, names in PROVIDER_MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "PROVIDERS":
        return providers()
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def _class_for(prefix: str) -> str | None:
    """The class a model-id prefix picks, importing provider modules in table order only until
    one answers (so `local/...` imports no cloud provider's module)."""
    for name in INVOKER_CLASSES:
        cls = __getattr__(name)
        if prefix == cls.provider or prefix in cls.aliases:
            return name
    return None


def tool_capable() -> list[str]:
    """`<prefix>/<model>` of every provider whose models can call tools (its class says so:
    `supports_tools`), in table order; imports the provider modules (not their SDKs)."""
    return [f"{cls.provider}/<model>" for name in INVOKER_CLASSES if (cls := __getattr__(name)).supports_tools]


@cache
def providers() -> dict[str, str]:
    """Model-id prefix -> invoker class name (`PROVIDERS`), from the classes' `provider` and
    `aliases`; the first call imports the provider modules (not their SDKs)."""
    table: dict[str, str] = {}
    for name in INVOKER_CLASSES:
        cls = __getattr__(name)
        for prefix in (cls.provider, *cls.aliases):
            table.setdefault(prefix, name)
    return table


def build_lm_invoker(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    retry_config: RetryConfig | None = None,
    *,
    fallbacks: Sequence[str | BaseLMInvoker] | None = None,
    on_midstream_failure: str = "error",
    first_token_timeout: float | None = None,
    **kwargs: Any,
) -> BaseLMInvoker:
    """Build an invoker from `"provider/model"`.

    `fallbacks` (model ids or invokers) makes it a `FallbackLMInvoker`: the model asked for
    first, then each fallback in order (a fallback given by id gets `retry_config` but not
    `credentials` or `config`, which belong to the first model; pass an invoker to configure
    one). `on_midstream_failure` and `first_token_timeout` are the chain's.

    `credentials` is the API key (default: the provider's environment variable or `.env`);
    `config` holds provider options such as `base_url` (every provider; the endpoint for Azure
    and Bedrock), `api_version` (Azure), `region` (Bedrock), `vertexai`/`project`/`location`
    (Google on Vertex AI), `default_hyperparameters`, `n_ctx`.
    GLLM's spelling (`gllm-inference`) `openai/<base_url>:<model>` means an OpenAI-compatible endpoint.
    """
    if fallbacks is not None or first_token_timeout is not None or on_midstream_failure != "error":
        from .fallback import FallbackLMInvoker

        if isinstance(fallbacks, (str, BaseLMInvoker)):
            fallbacks = [fallbacks]
        fallbacks = fallbacks or ()
        first = build_lm_invoker(model_id, credentials, config, retry_config, **kwargs)
        rest = [
            f if isinstance(f, BaseLMInvoker) else build_lm_invoker(f, retry_config=retry_config) for f in fallbacks
        ]
        return FallbackLMInvoker(
            [first, *rest], on_midstream_failure=on_midstream_failure, first_token_timeout=first_token_timeout
        )
    if not isinstance(model_id, str) or "/" not in model_id:
        raise ConfigurationError(
            f"model id {model_id!r} is not of the form 'provider/model'; known providers: "
            f"{', '.join(providers())} (e.g. 'local/smollm2-135m', 'openai/gpt-4.1-nano')"
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
    cls_name = _class_for(provider)
    if cls_name is None:
        raise ConfigurationError(
            f"unknown provider {provider!r} in model id {model_id!r}; known providers: {', '.join(providers())}"
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
