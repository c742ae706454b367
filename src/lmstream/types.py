"""Plain data types shared by prompts, invokers and the processor, and the event vocabulary
(`EventType`, `EventLevel`: re-exported by `lmstream.events`) that the engine speaks without
importing the event machinery."""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .event_values import CacheValue, ToolCallValue, ToolResultValue, UsageValue

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
    `reference`, `usage`. They are kept so code written for GLLM (`gllm-core`), and
    users' own emitters, share one vocabulary; usage travels in the done event's metadata.

    `status` (value `{"state", "position"?}`) says where a request stands before it runs: the
    embedded engine's `queued` (with its 1-based place in line) and `running`.

    `tool_approval_request` (value `{"approval_id", "tool_call_id", "name", "arguments"}`) asks a
    person to approve a call before it runs; `tool_progress` (value `{"tool_call_id", "name",
    "progress", "total", "message"}`) reports a running tool's progress (MCP progress notifications).
    `reset` (value `{"reason", "from", "to", "discarded"}`) says a fallback model took over after
    content had streamed: `discarded` characters of the answer so far are void (0 when the next
    model continues the text).
    `file` (value `{"mime_type", "url" | "data", "partial_index"?}`, `data` base64) is a file the
    model produced (an image); events sharing a `block_id` in their metadata are one file, each
    partial (`partial_index` 0, 1, ...) replacing the last, the one without it final.
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
    FILE = "file"
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

    def to_dict(self) -> UsageValue:
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

    def to_dict(self) -> ToolCallValue:
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

    def to_event_value(self) -> ToolResultValue:
        """The `tool_result` event's value: `output` is the tool's own value when it is JSON
        data (a dict stays a dict for a browser), else the text the model was sent."""
        value = self.value
        output = value if not self.is_error and _is_json_data(value) else self.output
        if self.denied:
            return {"id": self.id, "name": self.name, "output": self.output, "denied": True}
        return {"id": self.id, "name": self.name, "output": output}


@dataclass(slots=True)
class Attachment:
    """A file (image, PDF, audio, plain text) attached to a message.

    The MIME type is read from the bytes (magic numbers): `mime_type` is only a hint that keeps a
    text subtype (`text/markdown`, `text/csv`); a PNG labelled `text/plain` becomes `image/png`,
    and bytes of no supported type (HTML, SVG, an executable, anything else) raise
    `AttachmentError`. A URL attachment (`from_url`) carries no bytes: the provider fetches it
    where it can (lmstream never does), and its type comes from the label or the URL's extension.
    """

    data: bytes
    mime_type: str = ""
    filename: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        from . import _mime
        from .errors import AttachmentError

        label = _mime.normalise(self.mime_type)
        if self.url is not None:
            if self.data:
                raise AttachmentError("an Attachment has either bytes or a url, not both")
            if label not in _mime.SUPPORTED:
                raise AttachmentError(
                    f"URL attachment {_short(self.url)!r}: type {self.mime_type or 'unknown'!r} is not one lmstream "
                    f"carries; pass mime_type= one of {', '.join(_mime.SUPPORTED)}",
                    label=self.mime_type or None,
                )
            self.mime_type = label
            return
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise AttachmentError(f"Attachment data must be bytes, got {type(self.data).__name__}")
        self.data = bytes(self.data)
        found = _mime.sniff(self.data)
        if found is None:
            what = _mime.describe(self.data)
            name = f"{self.filename!r}" if self.filename else "the attachment"
            claimed = f" (labelled {self.mime_type})" if self.mime_type else ""
            raise AttachmentError(
                f"{name}{claimed} is {what}; lmstream accepts images (png, jpeg, gif, webp), PDF, "
                "audio (wav, mp3) and plain text, recognised from the bytes themselves",
                detected=what,
                label=self.mime_type or None,
            )
        keep_text = found == "text/plain" and label in _mime.TEXT_TYPES
        self.mime_type = label if keep_text and label else found

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str | None = None, filename: str | None = None) -> Attachment:
        """Bytes in memory; `mime_type` is a hint the bytes overrule."""
        return cls(data, mime_type or "", filename)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], mime_type: str | None = None) -> Attachment:
        """A file on disk (read whole); its name travels as `filename`, its type from its bytes."""
        p = Path(path)
        return cls(p.read_bytes(), mime_type or "", p.name)

    @classmethod
    def from_data_url(cls, url: str, filename: str | None = None) -> Attachment:
        """A `data:<type>;base64,<payload>` URL (what browsers and the `ai` client send)."""
        from .errors import AttachmentError

        if not url.startswith("data:") or "," not in url:
            raise AttachmentError(f"not a data: URL: {_short(url)!r}")
        head, _, payload = url[5:].partition(",")
        media, _, enc = head.partition(";")
        if not enc.split(";")[-1] == "base64":
            raise AttachmentError("data: URLs must be base64 (data:<type>;base64,<payload>)")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AttachmentError("the data: URL's payload is not valid base64") from exc
        return cls(data, media, filename)

    @classmethod
    def from_url(cls, url: str, mime_type: str | None = None, filename: str | None = None) -> Attachment:
        """A file the provider fetches itself (http(s), or gs:// for Vertex AI); lmstream never
        fetches it. A provider that cannot take URLs raises `ConfigurationError` saying so.
        `data:` URLs are decoded (`from_data_url`)."""
        from .errors import AttachmentError

        if url.startswith("data:"):
            return cls.from_data_url(url, filename)
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ("http", "https", "gs"):
            raise AttachmentError(f"URL attachments must be http(s):// or gs:// URLs, got {_short(url)!r}")
        path = url.split("?", 1)[0].split("#", 1)[0]
        guessed = mime_type or mimetypes.guess_type(path)[0] or ""
        name = filename or (path.rsplit("/", 1)[-1] or None)
        return cls(b"", guessed, name, url)

    # ------------------------------------------------------------------ views
    @property
    def kind(self) -> str:
        """`image`, `pdf`, `audio` or `text`."""
        from . import _mime

        return _mime.kind_of(self.mime_type) or "file"

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes (of the URL for a URL attachment): the blob store's key."""
        return hashlib.sha256(self.data if self.url is None else self.url.encode()).hexdigest()

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """The URL itself for a URL attachment, else a base64 `data:` URL."""
        return self.url if self.url is not None else f"data:{self.mime_type};base64,{self.base64()}"

    def text(self) -> str:
        """A text attachment's content (UTF-8)."""
        return self.data.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        where = f"url={_short(self.url)!r}" if self.url is not None else f"size={len(self.data)}"
        return f"Attachment(mime_type={self.mime_type!r}, filename={self.filename!r}, {where})"


def _short(s: str) -> str:
    return s if len(s) <= 80 else s[:77] + "..."


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
    cache: CacheValue | None = None
    #: the model calls a fallback chain or a pool made for this output, in order: `{"model",
    #: "outcome", "output_tokens", "usage"}` each (empty for a plain invoker); `usage` is their sum
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: files the model produced (images): each the final `file` event's value, `{"mime_type",
    #: "data" (base64) | "url"}`; partial previews are not kept
    files: list[dict[str, Any]] = field(default_factory=list)

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
