"""lmstream: stream language-model output as typed events, token by token.

    lmrp = LMRequestProcessor(PromptBuilder(user_template="{question}"), build_lm_invoker("local/smollm2-135m"))
    async with lmrp.stream(question="...") as stream:
        async for event in stream:
            print(event.value, end="")
    output = await stream.result()

Provider invokers (and their SDKs, and llama.cpp) are imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .budget import Budget
from .cache import ResponseCache
from .cost import Cost
from .engine.request_stream import RequestStream
from .errors import (
    AttachmentError,
    BudgetExceededError,
    ConfigurationError,
    ContextOverflowError,
    LMStreamError,
    LMTimeoutError,
    OutputParserError,
    OutputTruncatedError,
    PromptError,
    ProviderError,
    RateLimitError,
    StreamInterruptedError,
    ToolError,
)
from .events import (
    BaseEventHandler,
    CallbackEventHandler,
    ConsoleEventHandler,
    Event,
    EventEmitter,
    EventLevel,
    EventType,
    PrintEventHandler,
    RequestTracker,
    StreamEventHandler,
)
from .factory import build_lm_request_processor
from .invokers import INVOKER_CLASSES as _INVOKER_CLASSES
from .invokers import BaseLMInvoker, build_lm_invoker
from .parsers import BaseOutputParser, JSONOutputParser
from .processor import LMRequestProcessor
from .prompt import Message, PromptBuilder
from .retry import RetryConfig
from .sync import SyncRequestStream
from .tools import Tool, tool
from .types import Attachment, LMOutput, ThinkingBlock, TokenUsage, ToolCall, ToolResult

if TYPE_CHECKING:
    from .invokers import *  # noqa: F403  # the provider classes, for type checkers (loaded lazily below)
    from .invokers.fallback import FallbackLMInvoker, PooledLMInvoker
    from .mcp import MCPTools


def __getattr__(name: str) -> Any:
    if name == "MCPTools":  # the MCP SDK itself is imported only when a connection opens
        from .mcp import MCPTools

        return MCPTools
    if name in ("FallbackLMInvoker", "PooledLMInvoker"):  # loaded with the first chain or pool
        from .invokers import fallback

        return getattr(fallback, name)
    if name in _INVOKER_CLASSES:
        from . import invokers

        return getattr(invokers, name)
    raise AttributeError(f"module 'lmstream' has no attribute {name!r}")


__all__ = [
    "Attachment",
    "BaseEventHandler",
    "Budget",
    "BudgetExceededError",
    "BaseLMInvoker",
    "BaseOutputParser",
    "FallbackLMInvoker",
    "PooledLMInvoker",
    "CallbackEventHandler",
    "ConfigurationError",
    "AttachmentError",
    "ContextOverflowError",
    "ConsoleEventHandler",
    "Cost",
    "Event",
    "EventEmitter",
    "EventLevel",
    "EventType",
    "JSONOutputParser",
    "LMOutput",
    "LMRequestProcessor",
    "LMStreamError",
    "LMTimeoutError",
    "MCPTools",
    "Message",
    "OutputParserError",
    "OutputTruncatedError",
    "PrintEventHandler",
    "PromptBuilder",
    "PromptError",
    "ProviderError",
    "RateLimitError",
    "RequestStream",
    "RequestTracker",
    "ResponseCache",
    "RetryConfig",
    "StreamEventHandler",
    "StreamInterruptedError",
    "SyncRequestStream",
    "ThinkingBlock",
    "TokenUsage",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolResult",
    "__version__",
    "build_lm_invoker",
    "build_lm_request_processor",
    "tool",
    *_INVOKER_CLASSES,  # the provider table's classes (lmstream.invokers.PROVIDER_MODULES)
]
