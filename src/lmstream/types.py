"""Plain data types shared by prompts, invokers and the processor, and the event vocabulary
(`EventType`, `EventLevel`: re-exported by `lmstream.events`) that the engine speaks without
importing the event machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cost import Cost

__all__ = ["EventLevel", "EventType", "TokenUsage", "ToolCall", "ToolResult", "Attachment", "ThinkingBlock", "LMOutput"]

#: the sampling settings every provider accepts under these names (`invokers.params.COMMON_PARAMS`
#: checks them); the prompt names them when a user passes one as a template value
HYPERPARAMETER_NAMES = ("max_tokens", "temperature", "top_p", "stop", "seed")


class EventLevel(IntEnum):
    """Ordered severity; serialised by name (`"INFO"`)."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5


class EventType(StrEnum):
    """Built-in event types. Any other string is a valid user-defined type.

    Reserved, never emitted by lmstream itself: `code_start`, `code`, `code_end`, `activity`,
    `reference`, `status`, `usage`. They are kept so code written for GLLM (`gllm-core`), and
    users' own emitters, share one vocabulary; usage travels in the done event's metadata.

    `tool_approval_request` (value `{"approval_id", "tool_call_id", "name", "arguments"}`) asks a
    person to approve a call before it runs; `tool_progress` (value `{"tool_call_id", "name",
    "progress", "total", "message"}`) reports a running tool's progress (MCP progress notifications).
    `reset` (value `{"reason", "from", "to", "discarded"}`) says a fallback model took over after
    content had streamed: `discarded` characters of the answer so far are void (0 when the next
    model continues the text).
    """

    RESPONSE = "response"
    THINKING_START = "thinking_start"
    THINKING = "thinking"
    THINKING_END = "thinking_end"
    CODE_START = "code_start"
    CODE = "code"
    CODE_END = "code_end"
    ACTIVITY = "activity"
    REFERENCE = "reference"
    DATA = "data"
    STATUS = "status"
    TOOL_CALL_START = "tool_call_start"
    TOOL_CALL_DELTA = "tool_call_delta"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    TOOL_APPROVAL_REQUEST = "tool_approval_request"
    TOOL_PROGRESS = "tool_progress"
    RESET = "reset"
    USAGE = "usage"
    ERROR = "error"
    DONE = "done"


@dataclass(slots=True)
class TokenUsage:
    """Token counts as the provider reported them; `None` = not reported (unknown, not zero)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    #: USD (a float that also has `.total`, `.input`, `.output`, `.cache_read`); None when no
    #: price is known for the provider and model, 0 for the embedded model (`lmstream.cost`)
    cost: Cost | None = None
    #: USD an answer served from the response cache did not spend (its original `cost`; the
    #: served answer's own `cost` is 0); None when not served from the cache or the price is unknown
    saved_cost: Cost | None = None

    @property
    def total_tokens(self) -> int | None:
        """Input plus output; None when either is unknown."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost": None if self.cost is None else self.cost.to_dict(),
            **({"saved_cost": self.saved_cost.to_dict()} if self.saved_cost is not None else {}),
        }

    def add(self, other: TokenUsage) -> None:
        """Sum another call's usage into this one (the tool loop's total): a field stays known
        only while every call reported it, so an unknown part never passes for a complete count."""
        self.input_tokens = _sum(self.input_tokens, other.input_tokens)
        self.output_tokens = _sum(self.output_tokens, other.output_tokens)
        self.cached_tokens = _sum(self.cached_tokens, other.cached_tokens)
        self.reasoning_tokens = _sum(self.reasoning_tokens, other.reasoning_tokens)
        self.cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        if other.saved_cost is not None:
            self.saved_cost = other.saved_cost if self.saved_cost is None else self.saved_cost + other.saved_cost


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


@dataclass(slots=True)
class ToolCall:
    """A tool call the model asked for; `arguments` is the parsed JSON object.

    `signature` is provider state that must travel back with the call (Gemini's thought
    signature); it is not part of `to_dict()` or the `tool_call` event.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    signature: bytes | str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True)
class ToolResult:
    """What a tool returned (or the error it raised), sent back to the model."""

    id: str
    name: str
    output: str
    is_error: bool = False
    #: what the tool returned, before it was turned into text for the model
    value: Any = field(default=None, compare=False, repr=False)
    #: a person denied the call (or nobody answered in time): the tool never ran
    denied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "output": self.output}

    def to_event_value(self) -> dict[str, Any]:
        """The `tool_result` event's value: `output` is the tool's own value when it is JSON
        data (a dict stays a dict for a browser), else the text the model was sent."""
        value = self.value
        output = value if not self.is_error and _is_json_data(value) else self.output
        if self.denied:
            return {"id": self.id, "name": self.name, "output": self.output, "denied": True}
        return {"id": self.id, "name": self.name, "output": output}


@dataclass(slots=True)
class Attachment:
    """Binary content (an image, a file) attached to a message."""

    data: bytes
    mime_type: str
    filename: str | None = None

    def __repr__(self) -> str:
        return f"Attachment(mime_type={self.mime_type!r}, filename={self.filename!r}, size={len(self.data)})"


@dataclass(slots=True)
class ThinkingBlock:
    """One block of the model's reasoning, with the provider's signature when it gives one.

    The tool loop sends it back in the assistant turn (Anthropic requires this with thinking on).
    """

    text: str
    signature: str | None = None


@dataclass(slots=True)
class LMOutput:
    """Everything one request produced. `str(output)` is the text."""

    text: str = ""
    thinking: str = ""
    thinking_blocks: list[ThinkingBlock] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    structured_output: Any = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish_reason: str | None = None
    duration: float | None = None
    time_to_first_token: float | None = None
    model: str | None = None
    #: with a response cache: `{"hit", "joined", "age"}` (served from a stored answer, shared a
    #: running generation, seconds since that answer was made); None without a cache
    cache: dict[str, Any] | None = None
    #: the model calls a fallback chain or a pool made for this output, in order: `{"model",
    #: "outcome", "output_tokens", "usage"}` each (empty for a plain invoker); `usage` is their sum
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


def _is_json_data(v: Any) -> bool:
    if v is None or isinstance(v, (str, bool, int, float)):
        return v is not None
    if isinstance(v, (list, tuple)):
        return all(_is_json_data(x) or x is None for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and (_is_json_data(x) or x is None) for k, x in v.items())
    return False
