"""Ollama through its OpenAI-compatible endpoint (`/v1/chat/completions`).

Thinking models (qwen3, deepseek-r1, gpt-oss) stream their reasoning in a `reasoning` delta field
(older builds: `thinking`); the shared parser maps both to `thinking` events.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from .openai_chat import ChatFiles, OpenAICompatibleLMInvoker
from .params import INT, NUMBER, ParamTable

__all__ = ["OllamaLMInvoker"]


def _host_url() -> str | None:
    """`OLLAMA_HOST` as the ollama CLI reads it (`host:port`, scheme optional) -> a `/v1` base URL."""
    host = os.environ.get("OLLAMA_HOST", "").strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = "http://" + host
    return host + "/v1"


class OllamaLMInvoker(OpenAICompatibleLMInvoker):
    """`ollama/<model>` (e.g. `ollama/llama3.2`). Base URL `http://localhost:11434/v1` (or
    `OLLAMA_HOST`); no key needed (`OLLAMA_API_KEY` is sent when set, for proxies).

    Thinking: `hyperparameters={"reasoning_effort": "low" | "medium" | "high"}` on thinking models.
    """

    provider: ClassVar[str] = "ollama"
    tracing_name: ClassVar[str] = "ollama"
    env_vars: ClassVar[tuple[str, ...]] = ("OLLAMA_API_KEY",)
    default_base_url: ClassVar[str | None] = "http://localhost:11434/v1"
    base_url_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    #: Ollama's OpenAI-compatible endpoint reads base64 `image_url` parts (into its native `images`
    #: field, for vision models such as llava); it fetches no URL and takes no PDF or audio
    files: ClassVar[ChatFiles] = ChatFiles("Ollama", kinds=("image", "text"), url_kinds=())
    extra_params: ClassVar[ParamTable] = {
        **OpenAICompatibleLMInvoker.extra_params,
        "top_k": INT,
        "min_p": NUMBER,
    }

    def __init__(self, model_name: str, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(model_name, base_url=base_url or _host_url(), **kwargs)
