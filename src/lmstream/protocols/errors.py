"""What the server says about a failure, and to whom; `BadRequest`, a client's own error.

Browsers get a generic sentence plus the error's type: an upstream's error text can hold an
internal base URL or, from an upstream that echoes requests, the operator's key. The server log
gets the full text with every credential-looking token masked (`redact`, the one redaction every
error leaving the process goes through: logs, HTTP, spans, batch output).
"""

from __future__ import annotations

from .._redact import redact

__all__ = ["BadRequest", "browser_error_text", "public_error_text", "redact"]


class BadRequest(ValueError):
    """A client error: `field` names what is wrong; `status` is the HTTP status (400, 408, 413)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


def public_error_text(exc: BaseException | str) -> str:
    """The full text of a failure for the server log, credentials masked."""
    if isinstance(exc, str):
        return redact(exc)
    return f"{type(exc).__name__}: {redact(str(exc))}"


#: what happened and what to do, by the kind of failure: a person reads this, not a developer
_SAID = {
    "StreamInterruptedError": "The connection to the model broke in the middle of the answer; what is shown is "
    "all that arrived. Press Regenerate to ask again.",
    "LMTimeoutError": "The model took too long to answer. Press Regenerate to try again, or ask for less.",
    "RateLimitError": "The model is busy right now (rate limited). Wait a moment, then press Regenerate.",
    "ContextOverflowError": "This chat is too long for the model. Start a new chat, or shorten the message.",
    "BudgetExceededError": "The spending limit for this server is reached: no new answers until its operator "
    "raises it.",
    "WorkerLostError": "The worker running this answer stopped. Press Regenerate to ask again.",
    "ProviderError": "The model's provider failed or refused the request. Press Regenerate to try again; if it "
    "keeps failing, the server log says why.",
    "ConfigurationError": "The server is not set up for this request. Its operator can find why in the server log.",
}


def browser_error_text(error_type: str | None) -> str:
    """What a browser is told: what happened and what to do, by the kind of failure (never the
    details, which may hold a key or an internal address)."""
    kind = error_type if error_type and error_type.isidentifier() else "Error"
    said = _SAID.get(kind)
    if said is not None:
        return f"{said} ({kind})"
    return f"The answer failed ({kind}). The server log has the details."
