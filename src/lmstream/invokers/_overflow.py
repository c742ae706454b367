"""Each provider's own signal for "the prompt does not fit the context window" -> one typed error.

Providers say it in their own words (an error code, a type, or a fixed sentence with the
numbers in it); this reads every known form, so a caller catches `ContextOverflowError`
whichever provider they use, and it is never retried (the same prompt would fail again).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ContextOverflowError

__all__ = ["context_overflow"]

#: error codes / types that mean exactly this (OpenAI, llama.cpp's server)
_KINDS = frozenset({"context_length_exceeded", "exceed_context_size_error"})

#: sentences that mean it, each with the numbers it carries (named groups)
_PATTERNS = (
    # OpenAI (and llama-cpp-python's server): "This model's maximum context length is 2048 tokens.
    # However, you requested 2100 tokens (2000 in the messages, 100 in the completion)."
    re.compile(
        r"maximum context length is (?P<window>\d+) tokens.*?(?:requested|resulted in) (?P<total>\d+) tokens"
        r"(?: \((?P<prompt>\d+) in the messages(?:, (?P<max>\d+) in the completion)?)?",
        re.S | re.I,
    ),
    re.compile(r"maximum context length is (?P<window>\d+) tokens", re.I),
    # Anthropic (also through Bedrock): "prompt is too long: 210000 tokens > 200000 maximum"
    re.compile(r"prompt is too long(?:: (?P<prompt>\d+) tokens > (?P<window>\d+) maximum)?", re.I),
    # Google: "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
    re.compile(
        r"input token count(?: \((?P<prompt>\d+)\))? exceeds the maximum number of tokens allowed"
        r"(?: \((?P<window>\d+)\))?",
        re.I,
    ),
    # Bedrock's ValidationException: "Input is too long for requested model."
    re.compile(r"input is too long|too many input tokens|exceeds? the (?:available )?context (?:size|window)", re.I),
)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def context_overflow(
    message: str, body: Any = None, provider: str | None = None, status_code: int | None = None
) -> ContextOverflowError | None:
    """The `ContextOverflowError` this error reply means, or None if it means something else.

    `message` is the provider's text; `body` its parsed JSON error, when there is one.
    """
    err = body.get("error", body) if isinstance(body, dict) else None
    fields: dict[str, Any] = err if isinstance(err, dict) else {}
    kind = next((fields[k] for k in ("code", "type") if isinstance(fields.get(k), str) and fields[k] in _KINDS), None)
    prompt = _int(fields.get("n_prompt_tokens"))  # llama.cpp's server says the numbers as fields
    window = _int(fields.get("n_ctx"))
    max_tokens = None
    match = None
    for pattern in _PATTERNS:
        match = pattern.search(message)
        if match:
            break
    if kind is None and match is None:
        return None
    if match is not None:
        groups = {k: int(v) for k, v in match.groupdict().items() if v}
        window = window or groups.get("window")
        prompt = prompt or groups.get("prompt")
        max_tokens = groups.get("max")
        if prompt is None and "total" in groups and max_tokens is None:
            prompt = groups["total"]
    numbers = []
    if prompt is not None:
        numbers.append(f"prompt {prompt} tokens")
    if max_tokens is not None:
        numbers.append(f"max_tokens {max_tokens}")
    if window is not None:
        numbers.append(f"context window {window} tokens")
    said = f" ({', '.join(numbers)})" if numbers else ""
    where = f"{provider}: " if provider else ""
    status = f"HTTP {status_code}: " if status_code is not None else ""
    return ContextOverflowError(
        f"{where}{status}the prompt does not fit the model's context window{said}: shorten the prompt or "
        f"the history, lower max_tokens, or use a model with a larger context. The provider said: {message}",
        prompt_tokens=prompt,
        max_tokens=max_tokens,
        context_window=window,
    )
