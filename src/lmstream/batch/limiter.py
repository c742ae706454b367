"""How many requests of a batch run at once: additive increase, multiplicative decrease.

On a remote provider a 429 (seen at the invoker's first retry, not only after its retries ran
out) halves the limit, at most once per back-off period, and holds new requests until the
server's `Retry-After` has passed; every success then adds 1/limit, so the limit grows back by
one per round of successful requests, up to the ceiling asked for. Without `adaptive`, the limit
stays at the ceiling (the embedded model: its engine's sequence count).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["AdaptiveLimiter"]

#: a 429 with no Retry-After holds new requests this long
_DEFAULT_PAUSE_S = 1.0
#: the longest a Retry-After may hold the batch (a bad header never stalls it for hours)
_MAX_PAUSE_S = 60.0


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, adaptive: bool = True) -> None:
        if ceiling < 1:
            raise ValueError("concurrency must be >= 1")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.limit = float(ceiling)
        self.in_flight = 0
        self.rate_limited = 0
        self.lowest = ceiling
        self._paused_until = 0.0
        self._last_cut = -1e9
        self._changed = asyncio.Event()

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> None:
        """Wait for a free slot (and for any back-off to pass)."""
        while True:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.in_flight < self.allowed:
                self.in_flight += 1
                return
            self._changed.clear()
            await self._changed.wait()

    def release(self, ok: bool) -> None:
        self.in_flight -= 1
        if ok and self.adaptive and self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._changed.set()

    def rate_limited_by_server(self, retry_after: float | None) -> None:
        """A 429 (or 529): cut the limit (once per back-off period) and hold new requests."""
        if not self.adaptive:
            return
        self.rate_limited += 1
        now = time.monotonic()
        pause = min(_MAX_PAUSE_S, retry_after if retry_after is not None and retry_after >= 0 else _DEFAULT_PAUSE_S)
        if now - self._last_cut >= max(pause, 0.05):
            self._last_cut = now
            self.limit = max(1.0, self.limit / 2)
            self.lowest = min(self.lowest, self.allowed)
        self._paused_until = max(self._paused_until, now + pause)
        self._changed.set()
