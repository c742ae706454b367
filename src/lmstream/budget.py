"""A spending limit in USD: `budget=` on a processor or a batch stops new requests once spent.

Every model call is charged its `usage.cost` when it ends, streamed or not, finished or
interrupted (an interrupted stream is charged what it reported). A server that reports no token
counts (llama_cpp.server behind a priced model id) is charged on lmstream's own count, and its
`usage.cost.estimated` is True: a budget never lets calls spend uncounted. Requests already running when
the limit is reached finish; the next one raises `BudgetExceededError` before it sends anything.
"""

from __future__ import annotations

import threading

from .cost import price_known
from .errors import BudgetExceededError, ConfigurationError

__all__ = ["Budget", "as_budget"]


class Budget:
    """`Budget(5.0)`: at most about $5 (the last requests may overshoot by what they cost).

    One `Budget` may be shared by several processors and batches, from several threads.
    """

    __slots__ = ("_lock", "limit", "spent")

    def __init__(self, usd: float) -> None:
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or usd < 0:
            raise ConfigurationError(f"budget must be a number of USD >= 0, got {usd!r}")
        self.limit = float(usd)
        self.spent = 0.0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.spent)

    def check(self, billed_as: str | None, model: str, model_id: str) -> None:
        """Before a model call of `model_id` (`model` as `billed_as` bills it, `lmstream.cost`):
        refuse it when the limit is spent, or when no price is known (a budget that cannot count
        would never stop anything)."""
        if not price_known(billed_as, model):
            raise ConfigurationError(
                f"budget= needs prices, and none is known for {model_id} (install "
                "'lmstream[cost]', or drop budget= for a provider that does not bill)"
            )
        if self.spent >= self.limit:
            raise BudgetExceededError(
                f"budget of ${self.limit:.4f} spent (${self.spent:.4f}); no new request is started — "
                "raise budget= to go on",
                limit=self.limit,
                spent=self.spent,
            )

    def charge(self, usd: float | None) -> None:
        if usd:
            with self._lock:
                self.spent += float(usd)

    def __repr__(self) -> str:
        return f"Budget(limit={self.limit!r}, spent={self.spent!r})"


def as_budget(budget: float | Budget | None) -> Budget | None:
    if budget is None or isinstance(budget, Budget):
        return budget
    return Budget(budget)
