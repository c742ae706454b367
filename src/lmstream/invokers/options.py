"""The keywords every invoker constructor takes, typed once.

Provider constructors write `**options: Unpack[InvokerOptions]` after their own keywords
instead of repeating these six, so editors and mypy still see (and check) every keyword.
`model_name` stays an explicit first parameter: it is positional, and the local invoker
gives it a default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from ..retry import RetryConfig

__all__ = ["InvokerOptions"]


class InvokerOptions(TypedDict, total=False):
    """Keywords shared by every invoker (all optional)."""

    #: the provider's API key (default: its environment variable, or `.env`)
    api_key: str | None
    #: the provider's endpoint (default: its public API)
    base_url: str | None
    #: hyperparameters sent with every call unless a call overrides them
    default_hyperparameters: Mapping[str, Any] | None
    #: retries before the first token, and the total / idle timeouts
    retry_config: RetryConfig | None
    #: functions, `Tool`s or `{"name", "description", "parameters"}` dicts the model may call
    tools: Sequence[Any] | None
    #: a pydantic model or a JSON schema dict for structured output
    response_schema: Any
    #: tokens the model reads and writes in one request (prompt + answer), when the caller knows it
    context_window: int | None
