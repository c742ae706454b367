"""The public names of `lmstream`, pinned: adding or removing one is a deliberate API change.

Update PUBLIC below (and the docs/ page where the name is documented) in the same commit as the change;
a provider class is public through its line in the provider table (`lmstream.invokers.PROVIDER_MODULES`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import lmstream
from lmstream.invokers import INVOKER_CLASSES

PUBLIC = {
    # events
    "BaseEventHandler",
    "CallbackEventHandler",
    "ConsoleEventHandler",
    "Event",
    "EventEmitter",
    "EventLevel",
    "EventType",
    "PrintEventHandler",
    "StreamEventHandler",
    # prompts, processor, parsers, tools
    "Message",
    "PromptBuilder",
    "LMRequestProcessor",
    "build_lm_request_processor",
    "BaseOutputParser",
    "JSONOutputParser",
    "RequestStream",
    "SyncRequestStream",
    "RequestTracker",
    "ResponseCache",
    "Tool",
    "MCPTools",
    "tool",
    # invokers (the provider classes: LAZY below)
    "BaseLMInvoker",
    "build_lm_invoker",
    "FallbackLMInvoker",  # docs/fallback.md
    "PooledLMInvoker",
    "RetryConfig",
    "Budget",
    # data
    "Attachment",
    "LMOutput",
    "ThinkingBlock",
    "TokenUsage",
    "Cost",
    "ToolCall",
    "ToolResult",
    # errors
    "LMStreamError",
    "ConfigurationError",
    "AttachmentError",
    "PromptError",
    "ProviderError",
    "RateLimitError",
    "LMTimeoutError",
    "StreamInterruptedError",
    "ContextOverflowError",
    "OutputParserError",
    "OutputTruncatedError",
    "ToolError",
    "BudgetExceededError",
    "__version__",
}

#: the provider classes, loaded lazily: one line each in the provider table
LAZY = set(INVOKER_CLASSES)
PUBLIC |= LAZY


def test_all_is_exactly_the_public_names() -> None:
    assert len(lmstream.__all__) == len(set(lmstream.__all__)), "duplicate names in __all__"
    assert set(lmstream.__all__) - PUBLIC == set(), "new public name: add it to PUBLIC and document it in docs/"
    assert PUBLIC - set(lmstream.__all__) == set(), "public name removed from lmstream.__all__"


def test_every_public_name_resolves() -> None:
    for name in lmstream.__all__:
        assert getattr(lmstream, name) is not None, name
    assert isinstance(lmstream.__version__, str)
    for name in LAZY:  # a lazy invoker is the class of the same name in lmstream.invokers
        cls = getattr(lmstream, name)
        assert cls.__name__ == name and issubclass(cls, lmstream.BaseLMInvoker)


def test_star_import_gives_the_public_names() -> None:
    code = (
        "import json\n"
        "ns = {}\n"
        "exec('from lmstream import *', ns)\n"
        "print(json.dumps(sorted(k for k in ns if k != '__builtins__')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == sorted(PUBLIC)


def test_errors_share_one_base_class() -> None:
    errors = {n for n in PUBLIC if n.endswith("Error")}
    assert all(issubclass(getattr(lmstream, n), lmstream.LMStreamError) for n in errors)
