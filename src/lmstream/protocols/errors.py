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


def browser_error_text(error_type: str | None) -> str:
    """What a browser is told: that the answer failed, and the kind of failure (no details)."""
    kind = error_type if error_type and error_type.isidentifier() else "Error"
    return f"The answer failed ({kind}). The server log has the details."
