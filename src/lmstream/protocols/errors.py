"""What the server says about a failure, and to whom; `BadRequest`, a client's own error.

Browsers get a generic sentence plus the error's type: an upstream's error text can hold an
internal base URL or, from an upstream that echoes requests, the operator's key. The server log
gets the full text with every credential-looking token masked (`redact`).
"""

from __future__ import annotations

import re

__all__ = ["BadRequest", "browser_error_text", "public_error_text", "redact"]


class BadRequest(ValueError):
    """A client error: `field` names what is wrong; `status` is the HTTP status (400, 408, 413)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


_SECRETS = [
    # Authorization / Proxy-Authorization values of any scheme, and "Bearer xxx" anywhere
    re.compile(r"(?i)((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:[a-z]+\s+)?[^\s'\",;}]+"),
    re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{4,}"),
    # key-ish headers, parameters and JSON fields: api_key=..., "x-api-key": "...", key=...
    re.compile(
        r"(?i)((?:x-)?(?:api[-_]?key|access[-_]?token|secret|password|passwd|token|key)['\"]?\s*[:=]\s*['\"]?)"
        r"[^\s'\",&;}]+"
    ),
    # provider key shapes without a label
    re.compile(r"\b(?:sk|pk|rk|ak)[-_][A-Za-z0-9_-]{6,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}"),
    re.compile(r"\b(?:xox[abprs]|ghp|gho|ghs|github_pat|hf)_[A-Za-z0-9_]{8,}"),
    # user:password@ in URLs
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"),
]

_MASK = "[redacted]"


def redact(text: str) -> str:
    """`text` with bearer tokens, keys, passwords and URL credentials replaced by ``[redacted]``."""
    for i, pattern in enumerate(_SECRETS):
        if i == 0 or i == 2:
            text = pattern.sub(lambda m: m.group(1) + _MASK, text)
        elif i == 1:
            text = pattern.sub(lambda m: m.group(1) + m.group(2) + _MASK, text)
        elif i == len(_SECRETS) - 1:
            text = pattern.sub(_MASK + "@", text)
        else:
            text = pattern.sub(_MASK, text)
    return text


def public_error_text(exc: BaseException | str) -> str:
    """The full text of a failure for the server log, credentials masked."""
    if isinstance(exc, str):
        return redact(exc)
    return f"{type(exc).__name__}: {redact(str(exc))}"


def browser_error_text(error_type: str | None) -> str:
    """What a browser is told: that the answer failed, and the kind of failure (no details)."""
    kind = error_type if error_type and error_type.isidentifier() else "Error"
    return f"The answer failed ({kind}). The server log has the details."
