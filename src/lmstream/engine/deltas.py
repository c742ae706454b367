"""What a provider yields: the normalised pieces of a model's wire stream.

A plain `str` is a text delta (the hot path: no object per token); the classes below carry
everything else. `Delta` is the union a provider's `stream_deltas()` yields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from ..event_values import StatusValue

__all__ = [
    "CallParams",
    "Delta",
    "FinishDelta",
    "StatusDelta",
    "ThinkingDelta",
    "FileDelta",
    "ToolCallDelta",
    "ToolSpec",
    "UsageDelta",
]


class ToolSpec(Protocol):
    """What a provider sends of a tool the model may call (`lmstream.tools.Tool` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...


class CallParams(dict[str, Any]):
    """One model call's parameters, as a provider's `stream_deltas(messages, params)` gets them.

    The dict holds the validated hyperparameters (`params.get("max_tokens")`, `{**params}`);
    `tools` (what the model may call) and `response_schema` (a JSON schema the answer must
    match, or None) come beside them, per call: an invoker keeps no request's tools, so one
    invoker serves processors with different tools at once. `schema_model` is the pydantic
    model the schema came from (the engine validates the answer with it), or None.
    """

    __slots__ = ("response_schema", "schema_model", "tools")

    def __init__(
        self,
        hyperparameters: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] = (),
        response_schema: dict[str, Any] | None = None,
        schema_model: Any = None,
    ) -> None:
        super().__init__(hyperparameters or {})
        self.tools: Sequence[ToolSpec] = tools
        self.response_schema = response_schema
        self.schema_model = schema_model

    def copy(self) -> CallParams:
        """A copy a provider may change (pop what it sends apart), the tools and schema kept."""
        return CallParams(self, self.tools, self.response_schema, self.schema_model)

    def under(self, defaults: Mapping[str, Any]) -> CallParams:
        """These parameters over `defaults` (a fallback member's own hyperparameters)."""
        return CallParams({**defaults, **self}, self.tools, self.response_schema, self.schema_model)

    def __repr__(self) -> str:
        tools = [t.name for t in self.tools]
        return f"CallParams({dict(self)!r}, tools={tools}, schema={self.response_schema is not None})"


class ThinkingDelta:
    """A fragment of reasoning text; `end=True` closes the current thinking block.

    `signature` is the provider's proof of the block (Anthropic), which must travel back with
    it in a tool loop.
    """

    __slots__ = ("end", "signature", "text")

    def __init__(self, text: str = "", end: bool = False, signature: str | None = None) -> None:
        self.text = text
        self.end = end
        self.signature = signature


class ToolCallDelta:
    """A fragment of a streamed tool call, keyed by the provider's index within the response."""

    __slots__ = ("arguments", "id", "index", "name", "signature")

    def __init__(
        self,
        index: int,
        id: str | None = None,
        name: str | None = None,
        arguments: str = "",
        signature: bytes | str | None = None,
    ) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
        self.signature = signature


class UsageDelta:
    """Token usage; fields left as None keep what an earlier delta reported."""

    __slots__ = ("cached_tokens", "input_tokens", "output_tokens", "reasoning_tokens")

    def __init__(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens


class FinishDelta:
    """The provider's end marker was seen; `reason` is normalised (stop, length, tool_calls, ...).

    `response_id` and `response_model` are the provider's id of the response and the exact
    model that produced it, where the stream says (read by tracing: `gen_ai.response.*`).
    """

    __slots__ = ("reason", "response_id", "response_model")

    def __init__(self, reason: str | None, response_id: str | None = None, response_model: str | None = None) -> None:
        self.reason = reason
        self.response_id = response_id
        self.response_model = response_model


class FileDelta:
    """A file the model produced (an image): base64 `data` or a `url`. Deltas sharing a `key`
    are one file: each with a `partial_index` (0, 1, ...) replaces the one before (a preview
    sharpening), the one without it is the file itself."""

    __slots__ = ("data", "key", "mime_type", "partial_index", "url")

    def __init__(
        self,
        key: str,
        mime_type: str,
        *,
        data: str | None = None,
        url: str | None = None,
        partial_index: int | None = None,
    ) -> None:
        self.key = key
        self.mime_type = mime_type
        self.data = data
        self.url = url
        self.partial_index = partial_index

    def value(self) -> dict[str, object]:
        """The `file` event's value: `{"mime_type", "data" | "url", "partial_index"?}`."""
        out: dict[str, object] = {"mime_type": self.mime_type}
        if self.url is not None:
            out["url"] = self.url
        else:
            out["data"] = self.data or ""
        if self.partial_index is not None:
            out["partial_index"] = self.partial_index
        return out


class StatusDelta:
    """Where the request stands before it runs: `queued` (with its 1-based `position` in the
    line) or `running`. Not content: it never counts as the first token."""

    __slots__ = ("position", "state")

    def __init__(self, state: str, position: int | None = None) -> None:
        self.state = state
        self.position = position

    def value(self) -> StatusValue:
        """The `status` event's value: `{"state": ...}` plus `"position"` while queued."""
        if self.position is None:
            return {"state": self.state}
        return {"state": self.state, "position": self.position}


Delta: TypeAlias = "str | ThinkingDelta | ToolCallDelta | UsageDelta | FinishDelta | StatusDelta | FileDelta"
