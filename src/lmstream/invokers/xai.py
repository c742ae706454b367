"""xAI (Grok) through its OpenAI-compatible Chat Completions endpoint.

Speaks the same wire as `openai-chat/`; grok reasoning models stream their reasoning as
`reasoning_content` deltas, which the shared parser maps to `thinking` events.
"""

from __future__ import annotations

from typing import ClassVar

from .openai_chat import ChatFiles, OpenAIChatCompletionsLMInvoker
from .params import DICT, Check, ParamTable, one_of

__all__ = ["XAILMInvoker"]


class XAILMInvoker(OpenAIChatCompletionsLMInvoker):
    """`xai/<model>` (e.g. `xai/grok-4`). Key from `XAI_API_KEY`; base URL `https://api.x.ai/v1`.

    Reasoning effort (grok-3-mini): `hyperparameters={"reasoning_effort": "low" | "high"}`.
    """

    provider: ClassVar[str] = "xai"
    billed_as: ClassVar[str | None] = "x-ai"
    aliases: ClassVar[tuple[str, ...]] = ()
    tracing_name: ClassVar[str] = "x_ai"
    env_vars: ClassVar[tuple[str, ...]] = ("XAI_API_KEY",)
    default_base_url: ClassVar[str | None] = "https://api.x.ai/v1"
    base_url_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    max_tokens_field: ClassVar[str] = "max_tokens"
    #: xAI's image understanding reads jpeg and png, as base64 data: URLs or https URLs
    files: ClassVar[ChatFiles] = ChatFiles(
        "xAI", kinds=("image", "text"), url_kinds=("image",), image_types=("image/png", "image/jpeg")
    )
    extra_params: ClassVar[ParamTable] = {
        **OpenAIChatCompletionsLMInvoker.extra_params,
        "reasoning_effort": one_of("low", "high"),
        "search_parameters": Check(DICT.test, "a dict (xAI live search)"),
    }
