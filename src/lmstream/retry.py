"""Retry and timeout policy shared by every invoker."""

from __future__ import annotations

import contextvars
import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryConfig", "notify_retry", "retry_listener"]

#: told of each retry before its back-off (the error, the delay): a batch narrows its concurrency
#: on 429 without waiting for the invoker's own retries to run out; set per task, None by default
retry_listener: contextvars.ContextVar[Callable[[BaseException, float], None] | None] = contextvars.ContextVar(
    "lmstream_retry_listener", default=None
)


def notify_retry(exc: BaseException, delay: float) -> None:
    listener = retry_listener.get()
    if listener is not None:
        listener(exc, delay)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """When and how a request is retried.

    Retries happen only before the first token (429, 408, 409, 5xx, connection errors and
    connect/read timeouts), with exponential backoff and jitter, honouring `Retry-After`.
    `timeout` bounds the whole request including retries; `idle_timeout` bounds the wait for
    each next chunk once the stream is open. `None` means no limit.
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: bool = True
    timeout: float | None = None
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        from .errors import ConfigurationError

        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError("RetryConfig.max_retries must be an int >= 0")
        for name in ("base_delay", "max_delay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigurationError(f"RetryConfig.{name} must be a number >= 0")
        for name in ("timeout", "idle_timeout"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v <= 0):
                raise ConfigurationError(f"RetryConfig.{name} must be a positive number of seconds or None")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None and retry_after >= 0:
            return float(retry_after)  # the server knows best; `timeout` still bounds the total
        d = float(min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))
        if self.jitter:
            d = random.uniform(d / 2, d)
        return d
