"""Invokers made of invokers: a fallback chain (`FallbackLMInvoker`) and a pool of equivalent
deployments (`PooledLMInvoker`).

Both are invokers, so they go wherever one goes (a processor, `lmstream serve`, a worker, a
batch, the sync API) and they nest: a chain of pools, a pool of local engines. The switching
itself (which failures move on, what happens to a partial answer) is the engine's
(`lmstream.engine.fallback`); these classes hold the configuration, forward the shared
settings to their members, and, for a pool, pick the order and keep the cooldowns. A call's
tools and response schema reach every member with the call itself (`CallParams`).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..engine.fallback import POLICIES, CallPlan
from ..errors import ConfigurationError, RateLimitError
from ..prompt import Message
from .base import BaseLMInvoker

__all__ = ["FallbackLMInvoker", "PooledLMInvoker"]

STRATEGIES = ("least-busy", "round-robin")


def _members(invokers: Sequence[BaseLMInvoker], what: str) -> list[BaseLMInvoker]:
    if isinstance(invokers, (str, BaseLMInvoker)) or not isinstance(invokers, Sequence):
        raise ConfigurationError(f"{what} takes a list of invokers, e.g. [build_lm_invoker(...), ...]")
    members = list(invokers)
    if not members:
        raise ConfigurationError(f"{what} needs at least one invoker")
    for inv in members:
        if not isinstance(inv, BaseLMInvoker):
            raise ConfigurationError(
                f"{what} takes invokers, got {type(inv).__name__} {inv!r}; build one with build_lm_invoker(model_id)"
            )
    return members


class _Composite(BaseLMInvoker):
    """What a chain and a pool share: members, forwarded settings, health."""

    #: the engine records a composite's members' attempts, not the composite itself
    is_chain: ClassVar[bool] = True

    def __init__(self, members: list[BaseLMInvoker]) -> None:
        first = members[0]
        super().__init__(model_name=first.model_name, retry_config=first.retry_config)
        self.members = members
        if any(m.tools for m in members):
            self.tools = list(first.tools)

    @property
    def model_id(self) -> str:
        """The first member's: what a server names its model, what a price table looks up."""
        return self.members[0].model_id

    @property
    def context_window(self) -> int | None:
        return self.members[0].context_window

    @context_window.setter
    def context_window(self, value: int | None) -> None:
        for m in self.members:
            m.context_window = value

    def accepts_prefix(self, prefix: str) -> bool:
        return self.members[0].accepts_prefix(prefix)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.members[0].count_tokens(messages)

    def output_limit(self) -> int | None:
        return self.members[0].output_limit()

    def endpoint(self) -> str | None:
        return self.members[0].endpoint()

    def priced_models(self) -> list[tuple[str | None, str, str]]:
        return [pm for m in self.members for pm in m.priced_models()]

    def validate_hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Checked against every member: a chain sends the same request to each of them."""
        out: dict[str, Any] = {}
        for m in getattr(self, "members", ()):
            out = m.validate_hyperparameters(params)
        return out if getattr(self, "members", None) else dict(params)

    def check_tools(self, tools: Sequence[Any]) -> None:
        """Every member must call tools: the call may reach any of them."""
        for m in self.members:
            m.check_tools(tools)

    def engine_stats(self) -> dict[str, int] | None:
        for m in self.members:
            stats = m.engine_stats()
            if stats is not None:
                return stats
        return None

    def cooling(self) -> list[dict[str, Any]]:
        return [c for m in self.members for c in m.cooling()]

    def load(self) -> None:
        """Load the members that load a model in process (the embedded model), before the first request."""
        for m in self.members:
            load = getattr(m, "load", None)
            if callable(load):
                load()

    async def aclose(self) -> None:
        for m in self.members:
            await m.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}([{', '.join(repr(m) for m in self.members)}])"


class FallbackLMInvoker(_Composite):
    """Tries each invoker in order until one answers.

    A failure another model may not share moves on to the next invoker (see
    `lmstream.engine.fallback.switch_reason`; docs/fallback.md has the table): before the first
    content event invisibly (same request, one `done`, no `error`); after it as
    `on_midstream_failure` says: `"error"` raises `StreamInterruptedError` with the partial
    output, `"restart"` emits a `reset` event and the next model answers afresh, `"continue"`
    has the next model continue the text where it accepts an assistant prefix (else it
    restarts and the reset's reason says why). `first_token_timeout` (seconds) moves on when no
    content event came in time.
    """

    provider: ClassVar[str] = "fallback"

    def __init__(
        self,
        invokers: Sequence[BaseLMInvoker],
        *,
        on_midstream_failure: str = "error",
        first_token_timeout: float | None = None,
    ) -> None:
        members = _members(invokers, "FallbackLMInvoker")
        if on_midstream_failure not in POLICIES:
            raise ConfigurationError(
                f"on_midstream_failure must be one of {', '.join(POLICIES)}, got {on_midstream_failure!r}"
            )
        if first_token_timeout is not None and (
            isinstance(first_token_timeout, bool)
            or not isinstance(first_token_timeout, (int, float))
            or first_token_timeout <= 0
        ):
            raise ConfigurationError("first_token_timeout must be a positive number of seconds, or None")
        super().__init__(members)
        self.on_midstream_failure = on_midstream_failure
        self.first_token_timeout = float(first_token_timeout) if first_token_timeout is not None else None

    def call_plan(self) -> CallPlan:
        return CallPlan(self.members, self.on_midstream_failure, self.first_token_timeout)


class PooledLMInvoker(_Composite):
    """Spreads requests over equivalent deployments (several base URLs or keys of one model,
    several local engines).

    `strategy="least-busy"` sends each request to the deployment with the fewest requests in
    flight (ties in turn), `"round-robin"` to each healthy deployment in turn. A deployment
    that fails (after its own retries) cools down for `max(cooldown, Retry-After)` seconds and
    gets no traffic meanwhile; the request goes on to the next healthy one, invisibly before its
    first content. With every deployment cooling down, a request fails at once with
    `RateLimitError` (`retry_after`: when the first one is back), which a fallback chain around
    the pool takes as its cue.
    """

    provider: ClassVar[str] = "pool"

    def __init__(
        self,
        invokers: Sequence[BaseLMInvoker],
        *,
        strategy: str = "least-busy",
        cooldown: float = 30.0,
    ) -> None:
        members = _members(invokers, "PooledLMInvoker")
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown < 0:
            raise ConfigurationError("cooldown must be a number of seconds >= 0")
        super().__init__(members)
        self.strategy = strategy
        self.cooldown = float(cooldown)
        self._busy = [0] * len(members)
        self._until = [0.0] * len(members)  # time.monotonic() when each deployment is back
        self._turn = itertools.count()
        self._lock = threading.Lock()  # the sync API runs requests on another thread's loop

    def _order(self) -> list[int]:
        """Healthy deployments, the one to try first first."""
        now = time.monotonic()
        n = len(self.members)
        with self._lock:
            start = next(self._turn) % n
            healthy = [(start + k) % n for k in range(n) if self._until[(start + k) % n] <= now]
            if self.strategy == "least-busy":
                healthy.sort(key=lambda i: self._busy[i])  # stable: ties keep the turn order
        return healthy

    def cooling(self) -> list[dict[str, Any]]:
        """Deployments cooling down now: `{"deployment", "model", "seconds_left"}` (no URL, no key)."""
        now = time.monotonic()
        out = [
            {"deployment": i, "model": m.model_id, "seconds_left": round(self._until[i] - now, 1)}
            for i, m in enumerate(self.members)
            if self._until[i] > now
        ]
        return out + [c for m in self.members for c in m.cooling()]

    def _cool(self, index: int, exc: BaseException) -> None:
        retry_after = getattr(exc, "retry_after", None) or 0.0
        with self._lock:
            self._until[index] = max(self._until[index], time.monotonic() + max(self.cooldown, float(retry_after)))

    def call_plan(self) -> CallPlan:
        """The healthy deployments in the order to try them; each one counts its requests in
        flight while it answers, and cools down when it fails."""
        order = self._order()
        if not order:
            wait = max(0.0, min(self._until) - time.monotonic())
            raise RateLimitError(
                f"every deployment of {self.model_id} in this pool is cooling down after failures; "
                f"the first is back in {wait:.1f}s",
                provider=self.provider,
                retryable=True,
                retry_after=wait,
            )
        busy = self._busy

        def start(i: int) -> None:
            busy[order[i]] += 1

        def end(i: int) -> None:
            busy[order[i]] -= 1

        return CallPlan(
            [self.members[i] for i in order],
            on_failure=lambda i, exc: self._cool(order[i], exc),
            on_start=start,
            on_end=end,
        )
