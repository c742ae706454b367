"""`redact`: the one masking of secrets in error text, wherever an error leaves the process.

An upstream's error text can echo the request it refused (its `Authorization` header, the key
in a query string) or name a base URL with credentials in it. The server log, lmstream's own SSE,
OpenTelemetry spans, `lmstream batch` output and error events all pass error text through here.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

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
