"""Every provider path as one list: the wire table's providers plus LangChain over ChatOpenAI.

Shared by the endings and overflow tests: `lmrp_for(name, srv)` builds a processor on that
path pointed at a `WireServer`, and `wire_of(name)` says which wire format it reads.
"""

from __future__ import annotations

from typing import Any

from lmstream import LMRequestProcessor, PromptBuilder, RetryConfig
from tests.wire.providers import KEY, NAMES, PROVIDERS
from tests.wire.providers import invoker as _invoker
from tests.wire.server import WireServer

__all__ = ["FAST", "PATHS", "lmrp_for", "wire_of"]

FAST = RetryConfig(max_retries=2, base_delay=0.01)
PATHS = [*NAMES, "langchain"]


def wire_of(name: str) -> str:
    return "chat" if name == "langchain" else PROVIDERS[name].wire


def lmrp_for(name: str, srv: WireServer) -> LMRequestProcessor[Any]:
    builder = PromptBuilder(system_template="Be brief.", user_template="{q}")
    if name == "langchain":
        from langchain_openai import ChatOpenAI

        from lmstream import LangChainLMInvoker

        model = ChatOpenAI(model="gpt-4o-mini", base_url=srv.base_url + "/v1", api_key=KEY, max_retries=0)
        return LMRequestProcessor(builder, LangChainLMInvoker(model, retry_config=FAST))
    return LMRequestProcessor(builder, _invoker(PROVIDERS[name], srv, retry_config=FAST))
