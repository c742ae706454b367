"""What a client may choose about the upstream request: a few sampling settings, within caps.

Everything else (`extra_body`, `model`, `messages`, `tools`, `n`, headers, ...) is the
operator's: a client naming it gets a 400 that names the field. A library user calling
`process()` directly is not a client and keeps full control.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest

__all__ = ["CLIENT_HYPERPARAMETERS", "ClientPolicy"]

#: the sampling settings every provider understands, the only ones a client may send
CLIENT_HYPERPARAMETERS = ("max_tokens", "seed", "stop", "temperature", "top_p")

_MAX_STOPS = 4
_MAX_STOP_CHARS = 120
_INT64 = 2**63


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _name(key: object) -> str:
    text = str(key)
    return text if len(text) <= 40 and text.isidentifier() else repr(text[:40])


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """The caps. `max_tokens` is the ceiling a client may ask for (None: no ceiling; the
    processor's own default applies when the client asks for nothing)."""

    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise ValueError("max_tokens must be a positive int or None")

    def _checks(self) -> dict[str, tuple[Callable[[Any], bool], str]]:
        ceiling = self.max_tokens
        return {
            "max_tokens": (
                lambda v: _is_int(v) and 1 <= v <= (ceiling or _INT64),
                f"an int from 1 to {ceiling} (the server's limit)" if ceiling else "a positive int",
            ),
            "temperature": (lambda v: _is_num(v) and 0 <= v <= 2, "a number from 0 to 2"),
            "top_p": (lambda v: _is_num(v) and 0 <= v <= 1, "a number from 0 to 1"),
            "seed": (lambda v: _is_int(v) and -_INT64 <= v < _INT64, "a 64-bit int"),
            "stop": (
                lambda v: (
                    (isinstance(v, str) and len(v) <= _MAX_STOP_CHARS)
                    or (
                        isinstance(v, list)
                        and len(v) <= _MAX_STOPS
                        and all(isinstance(s, str) and len(s) <= _MAX_STOP_CHARS for s in v)
                    )
                ),
                f"a string or a list of at most {_MAX_STOPS} strings of at most {_MAX_STOP_CHARS} characters",
            ),
        }

    def check(self, raw: Any, where: str = "hyperparameters") -> dict[str, Any] | None:
        """The client's hyperparameters, checked; raises `BadRequest` naming the first bad field
        (under `where`; "" for top-level fields, as the OpenAI routes take them)."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise BadRequest(where, "must be a JSON object")
        checks = self._checks()
        out: dict[str, Any] = {}
        for key, value in raw.items():
            check = checks.get(key)
            if check is None:
                raise BadRequest(
                    f"{where}.{_name(key)}" if where else _name(key),
                    f"not a setting clients may choose (allowed: {', '.join(CLIENT_HYPERPARAMETERS)})",
                )
            test, expected = check
            if not test(value):
                raise BadRequest(f"{where}.{key}" if where else key, f"must be {expected}")
            out[key] = value
        return out or None
