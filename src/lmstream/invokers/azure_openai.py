"""Azure OpenAI: Chat Completions on an Azure resource, both URL forms.

* `api_version="v1"` (the default): `{endpoint}/openai/v1/chat/completions`, the deployment name
  as `model` (Azure's v1 API, no dated version).
* a dated `api_version` such as `"2024-10-21"`:
  `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`.

Both authenticate with the `api-key` header. The stream is Chat Completions (Azure adds
`prompt_filter_results` chunks with no choices, which the shared parser skips), so this is the
`openai-chat` invoker with Azure's URL and header.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import quote

from ..errors import ConfigurationError
from .openai_chat import ChatFiles, OpenAIChatCompletionsLMInvoker
from .openai_responses import OpenAILMInvoker

__all__ = ["AzureOpenAILMInvoker", "AzureOpenAIResponsesLMInvoker", "azure_base"]


def azure_base(endpoint: str | None, api_version: str | None) -> tuple[str, str]:
    """(`endpoint` without a trailing `/openai...`, api_version) from arguments or environment."""
    endpoint = endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
    if not endpoint:
        raise ConfigurationError(
            "no Azure OpenAI endpoint: set AZURE_OPENAI_ENDPOINT (https://<resource>.openai.azure.com) "
            "or pass config={'base_url': ...}",
            setting="base_url",
            env_var="AZURE_OPENAI_ENDPOINT",
        )
    version = api_version or os.environ.get("AZURE_OPENAI_API_VERSION") or os.environ.get("OPENAI_API_VERSION")
    endpoint = endpoint.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if endpoint.endswith(suffix):
            if suffix == "/openai/v1":
                version = "v1"
            endpoint = endpoint[: -len(suffix)]
            break
    return endpoint, version or "v1"


class AzureOpenAILMInvoker(OpenAIChatCompletionsLMInvoker):
    """`azure-openai/<deployment>`. Key `AZURE_OPENAI_API_KEY`, endpoint `AZURE_OPENAI_ENDPOINT`
    (or `base_url=`), `api_version=` (default `"v1"`; also `AZURE_OPENAI_API_VERSION` /
    `OPENAI_API_VERSION`)."""

    files: ClassVar[ChatFiles] = ChatFiles("Azure OpenAI Chat Completions")
    provider: ClassVar[str] = "azure-openai"
    billed_as: ClassVar[str | None] = "azure"
    aliases: ClassVar[tuple[str, ...]] = ()
    tracing_name: ClassVar[str] = "azure.ai.openai"
    install_extra: ClassVar[str] = "azure"
    env_vars: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)
    default_base_url: ClassVar[str | None] = None
    base_url_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def __init__(
        self, model_name: str, base_url: str | None = None, api_version: str | None = None, **kwargs: Any
    ) -> None:
        endpoint, self.api_version = azure_base(base_url, api_version)
        super().__init__(model_name, base_url=endpoint, **kwargs)

    def _chat_url(self) -> str:
        if self.api_version == "v1":
            return f"{self.base_url}/openai/v1/chat/completions"
        deployment = quote(self.model_name, safe="")
        return (
            f"{self.base_url}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={quote(self.api_version, safe='')}"
        )

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}


class AzureOpenAIResponsesLMInvoker(OpenAILMInvoker):
    """`azure-openai-responses/<deployment>`: the Responses API on Azure, through the `openai`
    SDK (`{endpoint}/openai/v1/responses`, or `{endpoint}/openai/responses?api-version=` for a
    dated `api_version`). Same key, endpoint and version settings as `azure-openai/`."""

    provider: ClassVar[str] = "azure-openai-responses"
    billed_as: ClassVar[str | None] = "azure"
    tracing_name: ClassVar[str] = "azure.ai.openai"
    sdk_extra: ClassVar[str] = "azure"
    default_base_url: ClassVar[str | None] = None
    system_apart: ClassVar[bool] = False
    env_vars: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)

    def __init__(
        self, model_name: str, base_url: str | None = None, api_version: str | None = None, **kwargs: Any
    ) -> None:
        endpoint, self.api_version = azure_base(base_url, api_version)
        super().__init__(model_name, base_url=endpoint, **kwargs)

    def _make_client(self) -> Any:
        openai = self._sdk()
        kwargs = self._client_kwargs()
        kwargs.pop("base_url", None)
        if self.api_version == "v1":
            headers = {"api-key": self._api_key} if self._api_key else {}
            return openai.AsyncOpenAI(base_url=f"{self.base_url}/openai/v1/", default_headers=headers, **kwargs)
        return openai.AsyncAzureOpenAI(azure_endpoint=self.base_url, api_version=self.api_version, **kwargs)
