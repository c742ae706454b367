"""What a model call cost, in USD, from the `genai-prices` package (never a price table of our own).

`price_of(billed_as, model, usage)` gives a `Cost` when the biller and the model are known to
genai-prices, `None` when they are not (an OpenAI-compatible server, a LangChain model), and a
zero `Cost` for the embedded model. `billed_as` is genai-prices' id of who bills the call, which
each invoker class declares (`BaseLMInvoker.billed_as`): there is no table of providers here.
`genai-prices` is imported on first use only; without it installed every remote cost is `None`.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import Any, Protocol

__all__ = ["FREE", "Cost", "add_costs", "prefetch", "price_known", "price_of"]

logger = logging.getLogger("lmstream")

#: `billed_as` of a model that runs on this machine: nothing is billed
FREE = "free"


class Cost(float):
    """A USD amount that is also its parts: `cost == 0.0012`, `cost.total`, `cost.input`,
    `cost.output`, `cost.cache_read` (cache reads are part of the input price).

    `cost.estimated` is True when the provider reported no token counts and lmstream counted
    them itself (`estimate_counts`): a budget still counts such a call, and says it guessed."""

    __slots__ = ("cache_read", "estimated", "input", "output")
    input: float
    output: float
    cache_read: float
    estimated: bool

    def __new__(
        cls,
        total: float = 0.0,
        *,
        input: float = 0.0,
        output: float = 0.0,
        cache_read: float = 0.0,
        estimated: bool = False,
    ) -> Cost:
        self = super().__new__(cls, total)
        self.input = input
        self.output = output
        self.cache_read = cache_read
        self.estimated = estimated
        return self

    @property
    def total(self) -> float:
        return float(self)

    def __add__(self, other: object) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            float(self) + float(other),
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            estimated=self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, float | bool]:
        """`{"total", "input", "output", "cache_read"}` in USD (input includes cache reads), and
        `"estimated"`: True when the token counts were lmstream's, not the provider's."""
        return {
            "total": float(self),
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "estimated": self.estimated,
        }

    def __repr__(self) -> str:
        parts = f"input={self.input!r}, output={self.output!r}, cache_read={self.cache_read!r}"
        more = ", estimated=True" if self.estimated else ""
        return f"Cost(total={float(self)!r}, {parts}{more})"

    def __str__(self) -> str:
        return float.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (float(self), self.input, self.output, self.cache_read, self.estimated))


def _rebuild(total: float, input: float, output: float, cache_read: float, estimated: bool = False) -> Cost:
    return Cost(total, input=input, output=output, cache_read=cache_read, estimated=estimated)


ZERO = Cost(0.0)


def add_costs(a: Cost | None, b: Cost | None) -> Cost | None:
    """The cost of two calls together: unknown when either is unknown."""
    if a is None or b is None:
        return None
    return a + b


@functools.lru_cache(maxsize=256)
def price_known(billed_as: str | None, model: str) -> bool:
    """Whether `price_of` can price this model (checked once per pair); None bills unknown."""
    if billed_as == FREE:
        return True
    gp_provider = billed_as
    if gp_provider is None:
        return False
    try:
        import genai_prices
    except ImportError:
        logger.debug("lmstream: genai-prices is not installed; costs are unknown (pip install 'lmstream[cost]')")
        return False
    try:
        genai_prices.calc_price(genai_prices.Usage(input_tokens=0, output_tokens=0), model, provider_id=gp_provider)
    except (LookupError, ValueError):
        return False
    return True


class Counts(Protocol):
    """Token counts as `TokenUsage` holds them (input includes cached reads)."""

    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...


_prefetching = threading.Lock()
_prefetched = False


def prefetch(billed_as: str | None, model: str) -> None:
    """Load the price table in a background thread (importing it takes about a second), so the
    first answer is not held up by it. Called when a priced invoker is built; cheap after that."""
    global _prefetched
    if _prefetched or billed_as is None or billed_as == FREE or "genai_prices" in sys.modules:
        return
    with _prefetching:
        if _prefetched:
            return
        _prefetched = True
    threading.Thread(target=price_known, args=(billed_as, model), name="lmstream-prices", daemon=True).start()


def price_of(billed_as: str | None, model: str, usage: Counts, *, batch: bool = False) -> Cost | None:
    """The USD cost of `usage` on `model` as `billed_as` bills it, or None when no price is known.

    `batch`: answered through the provider's batch API, at its batch price where one is published."""
    if billed_as == FREE:
        return ZERO
    if usage.input_tokens is None or usage.output_tokens is None:
        return None  # the provider did not report its tokens: the cost is unknown, not 0
    if billed_as is None or not price_known(billed_as, model):
        return None
    import genai_prices

    gp_provider = billed_as
    inp = usage.input_tokens or 0
    cached = min(usage.cached_tokens or 0, inp)
    context = {"processing": "batch"} if batch else None
    try:
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=usage.output_tokens or 0),
            model,
            provider_id=gp_provider,
            price_context=context,
        )
        cache_part = 0.0
        if cached:
            only_cache = genai_prices.Usage(input_tokens=cached, cache_read_tokens=cached, output_tokens=0)
            cache_part = float(
                genai_prices.calc_price(only_cache, model, provider_id=gp_provider, price_context=context).input_price
            )
    except (LookupError, ValueError) as exc:  # e.g. a usage shape this model has no price for
        logger.debug("lmstream: no price for %s/%s: %s", billed_as, model, exc)
        return None
    return Cost(
        float(calc.total_price),
        input=float(calc.input_price),
        output=float(calc.output_price),
        cache_read=cache_part,
    )
