"""The invoker base class: a provider's configuration and the provider seam.

A provider implements `stream_deltas(messages, params)`: an async iterator that translates its
wire stream into `Delta`s (`lmstream.engine.deltas`); `params` (a `CallParams`) carries the
call's hyperparameters, tools and response schema. An invoker keeps no request's state and
knows nothing of events: the engine runs every model call (`lmstream.engine.call`: attempts
and retries, timeouts, pricing, the budget, tool-call assembly, the `LMOutput`), so every
provider behaves the same. `invoke()` and `stream()` hand one call to the engine as a request
of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..engine.deltas import CallParams, Delta, FileDelta, FinishDelta, ThinkingDelta, ToolCallDelta, UsageDelta
from ..errors import ConfigurationError
from ..prompt import Message
from ..retry import RetryConfig
from ..types import LMOutput, ThinkingBlock, ToolCall, ToolResult
from .params import COMMON_PARAMS as _COMMON_PARAMS
from .params import ParamTable

if TYPE_CHECKING:
    from ..engine.call import Emitter, ModelCallStream
    from ..engine.fallback import CallPlan
    from ..sync import SyncRequestStream
    from ..tools import Tool

__all__ = [
    "BaseLMInvoker",
    "CallParams",
    "Delta",
    "ThinkingDelta",
    "FileDelta",
    "ToolCallDelta",
    "UsageDelta",
    "FinishDelta",
]


def message_text(message: Message) -> str:
    """What of a message the model reads as text: its text, thinking, tool calls and results
    (an attachment counts as a fixed 1 kB: its real cost depends on the provider)."""
    out: list[str] = []
    for c in message.contents:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, ToolCall):
            out.append(f"{c.name}({c.arguments})")
        elif isinstance(c, ToolResult):
            out.append(str(c.output))
        elif isinstance(c, ThinkingBlock):
            out.append(c.text)
        else:
            out.append(" " * 1024)
    return "".join(out)


class BaseLMInvoker:
    """A provider's configuration and its seam, `stream_deltas()`.

    Every invoker takes the same keywords: `model_name`, `api_key`, `base_url`,
    `default_hyperparameters`, `retry_config`, `tools`, `response_schema`. `tools` and
    `response_schema` are what a direct `invoke()`/`stream()` sends; a processor sends its own
    with each call, so one invoker serves processors with different tools at once.
    """

    #: the model-id prefix that picks this class: `build_lm_invoker("<provider>/<model>")`
    provider: ClassVar[str] = "base"
    #: more prefixes that pick it (longer spellings)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: `gen_ai.provider.name` in traces (the GenAI conventions' value; "": `provider`)
    tracing_name: ClassVar[str] = ""
    #: whether the endpoint's host, when traces know it, names the provider better (a compatible server)
    tracing_name_from_host: ClassVar[bool] = False
    #: where requests go when no `base_url` is given (None: in process, or no fixed endpoint)
    default_base_url: ClassVar[str | None] = None
    #: whether the API takes the system prompt apart from the chat (traces: `gen_ai.system_instructions`)
    system_apart: ClassVar[bool] = False
    #: provider-specific hyperparameters passed through as they are (name -> type check, help)
    extra_params: ClassVar[ParamTable] = {}
    #: False for a model that cannot call tools: `tools=` then fails at construction
    supports_tools: ClassVar[bool] = True
    #: who bills its calls, as `genai-prices` names them ("openai", "azure", "aws", ...;
    #: `lmstream.cost.FREE`: nothing is billed; None: unknown, so calls have no cost). Not
    #: inherited by a subclass with its own `provider` (another endpoint may bill otherwise).
    billed_as: ClassVar[str | None] = None
    #: the output-token limit that applies when no `max_tokens` is given (None: the provider's)
    default_max_tokens: ClassVar[int | None] = None
    #: True when a final assistant message is continued as a prefix (the answer goes on from
    #: it): a fallback chain's `on_midstream_failure="continue"` needs it of the next model
    continues_prefix: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "provider" in cls.__dict__ and "billed_as" not in cls.__dict__:
            cls.billed_as = None  # a provider of its own is billed as it says, or unknown

    def __init__(
        self,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        default_hyperparameters: Mapping[str, Any] | None = None,
        retry_config: RetryConfig | None = None,
        tools: Sequence[Any] | None = None,
        response_schema: Any = None,
        context_window: int | None = None,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ConfigurationError(f"{type(self).__name__} needs a model_name (a non-empty string)")
        self.model_name = model_name
        self._api_key = api_key
        self.base_url = base_url
        self.retry_config = retry_config or RetryConfig()
        self.default_hyperparameters = self.validate_hyperparameters(default_hyperparameters or {})
        self.tools: list[Tool[..., Any]] = []
        if tools:
            self.set_tools(tools)
        if context_window is not None and (not isinstance(context_window, int) or context_window < 16):
            raise ConfigurationError("context_window must be an int >= 16 (tokens), or None when unknown")
        self._context_window = context_window
        self.response_schema: dict[str, Any] | None = None
        self._schema_model: Any = None
        if response_schema is not None:
            self.set_response_schema(response_schema)

    # ----- configuration
    @property
    def model_id(self) -> str:
        return f"{self.provider}/{self.model_name}"

    @property
    def context_window(self) -> int | None:
        """Tokens one request may use, prompt and answer together; None when unknown (then
        callers such as the server send the history as it is). Set it with `context_window=`."""
        return self._context_window

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        self._context_window = value

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens `messages` take in the prompt. This estimate (about 3 bytes a token, plus a few
        per message for the chat template) errs high; invokers with a tokenizer at hand count."""
        return sum(len(message_text(m).encode("utf-8")) // 3 + 4 for m in messages)

    def endpoint(self) -> str | None:
        """The URL this invoker's requests go to (None: in process, or not known)."""
        return self.base_url or self.default_base_url

    def traced_provider(self, host_says: str | None) -> str:
        """`gen_ai.provider.name` for this invoker's calls; `host_says` is the name the endpoint's
        host implies, when the tracing tables know it."""
        if host_says and self.tracing_name_from_host:
            return host_says
        return self.tracing_name or self.provider

    def __repr__(self) -> str:  # never shows the API key
        base = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(model_name={self.model_name!r}{base})"

    def output_limit(self) -> int | None:
        """The output-token limit a call without `max_tokens` gets (None: the provider's own)."""
        return self.default_max_tokens

    def check_tools(self, tools: Sequence[Any]) -> None:
        """Raise `ConfigurationError` when this model cannot call tools and `tools` is not empty."""
        if tools and not self.supports_tools:
            # the provider table is the package's (`lmstream.invokers`), which imports this module
            capable = importlib.import_module(__package__ or "lmstream.invokers").tool_capable()
            raise ConfigurationError(
                f"{self.model_id} cannot call tools (it would ignore them and answer anyway); use a model "
                f"that can: {', '.join(capable)} (openai-compatible/ on a server whose model calls tools)"
            )

    def set_tools(self, tools: Sequence[Any]) -> None:
        """The tools a direct `invoke()`/`stream()` offers (a processor sends its own)."""
        from ..tools import to_tool

        self.check_tools(tools)
        self.tools = [to_tool(t) for t in tools]

    def clear_tools(self) -> None:
        self.tools = []

    def set_response_schema(self, schema: Any) -> None:
        from ..structured import schema_of

        self.response_schema, self._schema_model = schema_of(schema) if schema is not None else (None, None)

    def validate_hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check names and types against the shared vocabulary plus this provider's extras."""
        if not isinstance(params, Mapping):
            raise ConfigurationError(f"hyperparameters must be a dict, got {type(params).__name__}")
        out: dict[str, Any] = {}
        for name, value in params.items():
            spec = _COMMON_PARAMS.get(name) or self.extra_params.get(name)
            if spec is None:
                known = sorted({*_COMMON_PARAMS, *self.extra_params})
                raise ConfigurationError(
                    f"unknown hyperparameter {name!r} for {type(self).__name__}; accepted: {', '.join(known)}"
                )
            check, expected = spec
            if value is not None and not check(value):
                raise ConfigurationError(
                    f"hyperparameter {name!r} must be {expected}, got {type(value).__name__} {value!r}"
                )
            if value is not None:
                out[name] = value
        return out

    # ----- the public calls
    def _prepare(
        self, messages: str | Sequence[Message | Mapping[str, Any]], hyperparameters: Mapping[str, Any] | None
    ) -> tuple[list[Message], dict[str, Any]]:
        msgs = [Message.user(messages)] if isinstance(messages, str) else [Message.coerce(m) for m in messages]
        params = {**self.default_hyperparameters, **self.validate_hyperparameters(hyperparameters or {})}
        return msgs, params

    async def invoke(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        hyperparameters: Mapping[str, Any] | None = None,
        event_emitter: Emitter | None = None,
    ) -> LMOutput:
        """One model call as a request of its own, its events to `event_emitter` ending with
        `done` (or `error`); returns the accumulated `LMOutput`. Run by the engine."""
        from ..engine import call

        return await call.invoke(self, messages, hyperparameters, event_emitter)

    def stream(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        hyperparameters: Mapping[str, Any] | None = None,
        event_emitter: Emitter | None = None,
    ) -> ModelCallStream:
        """One model call as its own event stream (`async with invoker.stream(...) as s`)."""
        from ..engine import call

        return call.stream(self, messages, hyperparameters, event_emitter)

    def stream_sync(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        hyperparameters: Mapping[str, Any] | None = None,
        event_emitter: Emitter | None = None,
    ) -> SyncRequestStream[LMOutput]:
        """`stream()` for synchronous code: `with invoker.stream_sync(msgs) as s: for event in s`."""
        from ..sync import SyncRequestStream

        return SyncRequestStream(lambda: self.stream(messages, hyperparameters, event_emitter))

    def invoke_sync(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        hyperparameters: Mapping[str, Any] | None = None,
        event_emitter: Emitter | None = None,
    ) -> LMOutput:
        """`invoke()` for synchronous code (runs on lmstream's background loop)."""
        from ..sync import run_sync

        return run_sync(lambda: self.invoke(messages, hyperparameters, event_emitter))

    def call_plan(self) -> CallPlan | None:
        """None: this invoker answers its calls itself. A composite (a fallback chain, a pool)
        names the members the engine tries instead."""
        return None

    def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Delta]:
        """The provider seam: yield one attempt's normalised deltas; raise lmstream errors.

        Implement this (an `async def` generator) to add a provider: yield `str` text
        fragments, `ThinkingDelta`, `ToolCallDelta` (fragments keyed by index), `UsageDelta`
        and, last, a `FinishDelta` (a stream without it is treated as dropped). Raise
        `ProviderError(..., retryable=True)` (or `RateLimitError`) for failures worth retrying
        before the first token. `params` are the validated hyperparameters (a dict), with the
        call's `params.tools` and `params.response_schema` beside them.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement stream_deltas(messages, params)")

    def accepts_prefix(self, prefix: str) -> bool:
        """Whether a final assistant message with this text is continued (`continues_prefix`)."""
        return self.continues_prefix

    def priced_models(self) -> list[tuple[str | None, str, str]]:
        """(`billed_as`, model name, model id) of every model a call may reach: a budget needs a
        price for each."""
        return [(self.billed_as, self.model_name, self.model_id)]

    def cooling(self) -> list[dict[str, Any]]:
        """Deployments cooling down after failures (a pool's), for health checks."""
        return []

    def engine_stats(self) -> dict[str, int] | None:
        """An in-process engine's load (`running`, `queued`, ...) for health checks; None for
        providers that run elsewhere."""
        return None

    async def aclose(self) -> None:
        """Release pooled connections; the invoker stays usable (it reopens on demand)."""

    async def __aenter__(self) -> BaseLMInvoker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
