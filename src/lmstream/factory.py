"""`build_lm_request_processor`: one call from a model id and templates to a ready processor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from .budget import Budget
from .errors import ConfigurationError
from .invokers import build_lm_invoker
from .parsers import BaseOutputParser, JSONOutputParser
from .processor import LMRequestProcessor
from .prompt import PromptBuilder
from .retry import RetryConfig
from .types import LMOutput

__all__ = ["build_lm_request_processor"]


@overload
def build_lm_request_processor(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    system_template: str = "",
    user_template: str = "",
    key_defaults: Mapping[str, Any] | None = None,
    output_parser_type: Literal["none"] = "none",
    tools: Sequence[Any] | None = None,
    retry_config: RetryConfig | None = None,
    response_schema: Any = None,
    budget: float | Budget | None = None,
) -> LMRequestProcessor[LMOutput]: ...


@overload
def build_lm_request_processor(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    system_template: str = "",
    user_template: str = "",
    key_defaults: Mapping[str, Any] | None = None,
    *,
    output_parser_type: Literal["json"],
    tools: Sequence[Any] | None = None,
    retry_config: RetryConfig | None = None,
    response_schema: Any = None,
    budget: float | Budget | None = None,
) -> LMRequestProcessor[Any]: ...


@overload
def build_lm_request_processor(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    system_template: str = "",
    user_template: str = "",
    key_defaults: Mapping[str, Any] | None = None,
    output_parser_type: str = "none",
    tools: Sequence[Any] | None = None,
    retry_config: RetryConfig | None = None,
    response_schema: Any = None,
    budget: float | Budget | None = None,
) -> LMRequestProcessor[Any]: ...


def build_lm_request_processor(
    model_id: str,
    credentials: str | None = None,
    config: dict[str, Any] | None = None,
    system_template: str = "",
    user_template: str = "",
    key_defaults: Mapping[str, Any] | None = None,
    output_parser_type: str = "none",
    tools: Sequence[Any] | None = None,
    retry_config: RetryConfig | None = None,
    response_schema: Any = None,
    budget: float | Budget | None = None,
) -> LMRequestProcessor[Any]:
    """One call from a model id and templates to a ready processor.

    Typed by its parser like the constructor: `LMRequestProcessor[LMOutput]` with no parser,
    `[Any]` (the parsed JSON) with `output_parser_type="json"`."""
    parsers: dict[str, type[BaseOutputParser[Any]] | None] = {"none": None, "json": JSONOutputParser}
    if output_parser_type not in parsers:
        raise ConfigurationError(f"output_parser_type must be one of {', '.join(parsers)}, got {output_parser_type!r}")
    parser_cls = parsers[output_parser_type]
    invoker = build_lm_invoker(model_id, credentials=credentials, config=config, retry_config=retry_config)
    return LMRequestProcessor(
        PromptBuilder(system_template, user_template, key_defaults),
        invoker,
        parser_cls() if parser_cls else None,
        tools=tools,
        response_schema=response_schema,
        budget=budget,
    )
