"""Exceptions raised by lmstream: one base class, one subclass per kind of failure.

Messages say how to fix the problem and never contain credentials.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LMStreamError",
    "ConfigurationError",
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
    "StreamGoneError",
    "RedisUnavailableError",
    "AttachmentError",
]


class LMStreamError(Exception):
    """Base class of every error lmstream raises on purpose."""

    #: whether a retry before the first token may succeed (set by the provider layer)
    retryable: bool = False
    retry_after: float | None = None


class ConfigurationError(LMStreamError, ValueError):
    """Bad set-up: unknown model id, missing credentials, bad hyperparameter.

    `setting` names what is missing when that is one setting ("base_url", "api_key") and
    `env_var` the environment variable that supplies it, so a command line can say the fix in
    its own words (`--base-url URL`, `--api-key KEY`) instead of the library's.
    """

    def __init__(self, message: str, *, setting: str | None = None, env_var: str | None = None):
        super().__init__(message)
        self.setting = setting
        self.env_var = env_var


class PromptError(LMStreamError, KeyError):
    """Template keys missing or unknown; names every offending key."""

    def __init__(self, message: str, missing: list[str] | None = None, unknown: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.missing = missing or []
        self.unknown = unknown or []

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ProviderError(LMStreamError):
    """The provider answered with an error (HTTP status or in-band error)."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        provider: str | None = None,
        body: Any = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider
        self.body = body
        if retryable is None:
            retryable = status_code is None or status_code in (408, 409, 429) or status_code >= 500
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = []
        if self.provider:
            parts.append(self.provider)
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class RateLimitError(ProviderError):
    """HTTP 429 after every retry."""


class LMTimeoutError(LMStreamError, TimeoutError):
    """The total timeout or the idle (between-chunks) timeout expired."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class StreamInterruptedError(LMStreamError):
    """The stream broke after tokens were emitted; `.partial_output` (an `LMOutput`: typed
    loosely so this module imports nothing of lmstream) holds exactly those."""

    def __init__(self, message: str, partial_output: Any, cause: BaseException | None = None):
        super().__init__(message)
        self.partial_output = partial_output
        self.cause = cause
        #: the answer's text block (event metadata), so a fallback that continues the text
        #: continues that block; None when the text had no block yet
        self.text_block: dict[str, Any] | None = None


class ContextOverflowError(LMStreamError):
    """The prompt (plus `max_tokens`) does not fit the model's context window; never retried.

    Each number is `None` where the provider did not say it.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        prompt_tokens: int | None = None,
        max_tokens: int | None = None,
        context_window: int | None = None,
    ):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_window = context_window


class OutputParserError(LMStreamError, ValueError):
    """The output could not be parsed; `.text` holds the raw text."""

    def __init__(self, message: str, text: str):
        super().__init__(message)
        self.text = text


class OutputTruncatedError(OutputParserError):
    """Structured or JSON output cut off by the output-token limit (`finish_reason="length"`).

    `.partial_value` is the JSON parsed so far, `.max_tokens` the limit that cut it (None when
    the provider's default applied), `.text` the raw text. Raise `max_tokens` to fix it.
    """

    finish_reason = "length"

    def __init__(self, message: str, text: str, partial_value: Any, max_tokens: int | None):
        super().__init__(message, text)
        self.partial_value = partial_value
        self.max_tokens = max_tokens


class ToolError(LMStreamError):
    """Tool loop failure, e.g. `max_lm_calls` reached before the model answered."""


class BudgetExceededError(LMStreamError):
    """The spending limit (`budget=`, USD) is used up: no new request is started.

    `.limit` and `.spent` are in USD. Requests already running finish (their cost still counts).
    """

    def __init__(self, message: str, *, limit: float, spent: float):
        super().__init__(message)
        self.limit = limit
        self.spent = spent


class StreamGoneError(LMStreamError, LookupError):
    """The resume position was trimmed or expired: resuming would leave a silent gap (HTTP 410)."""


class RedisUnavailableError(LMStreamError, ConnectionError):
    """Redis could not be reached or failed mid-command (the message names the server, never a password)."""


class AttachmentError(LMStreamError, ValueError):
    """A file lmstream will not carry: its bytes are no supported type (whatever its label says),
    or a URL without a usable type. `detected` says what the bytes look like ("HTML/SVG/XML
    markup", "an executable (ELF)"), `label` what the caller claimed."""

    def __init__(self, message: str, *, detected: str | None = None, label: str | None = None):
        super().__init__(message)
        self.detected = detected
        self.label = label
