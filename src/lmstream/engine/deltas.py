"""What a provider yields: the normalised pieces of a model's wire stream.

A plain `str` is a text delta (the hot path: no object per token); the classes below carry
everything else. `Delta` is the union a provider's `stream_deltas()` yields.
"""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Delta", "FinishDelta", "StatusDelta", "ThinkingDelta", "ToolCallDelta", "UsageDelta"]


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


class StatusDelta:
    """Where the request stands before it runs: `queued` (with its 1-based `position` in the
    line) or `running`. Not content: it never counts as the first token."""

    __slots__ = ("position", "state")

    def __init__(self, state: str, position: int | None = None) -> None:
        self.state = state
        self.position = position

    def value(self) -> dict[str, object]:
        """The `status` event's value: `{"state": ...}` plus `"position"` while queued."""
        if self.position is None:
            return {"state": self.state}
        return {"state": self.state, "position": self.position}


Delta: TypeAlias = "str | ThinkingDelta | ToolCallDelta | UsageDelta | FinishDelta | StatusDelta"
