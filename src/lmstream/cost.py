"""What a model call cost, in USD, from the `genai-prices` package (never a price table of our own).

`price_of(billed_as, model, usage)` gives a `Cost` when the biller and the model are known to
genai-prices, `None` when they are not (an OpenAI-compatible server, a LangChain model), and a
zero `Cost` for the embedded model. `billed_as` is genai-prices' id of who bills the call, which
each invoker class declares (`BaseLMInvoker.billed_as`): there is no table of providers here.
Without genai-prices installed every remote cost is `None`.

Importing genai-prices takes about 0.3 s of CPU (most of it building its types), longer than a
whole first streamed call. So it is never imported for the embedded model or unpriced models,
never while a call streams, and not at all once this machine has priced the model before: the
rates genai-prices gave for a model whose price is flat (no tiers, no dated changes) are kept in
a small file (`$LMSTREAM_CACHE_DIR/prices.json`, else `~/.cache/lmstream/prices.json`), stamped
with the installed genai-prices data file, and reused by later processes. A tiered or dated
price always asks genai-prices; so does every price once the application imported genai-prices
itself (it may have updated its prices).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
from typing import Any, Protocol

__all__ = ["FREE", "Cost", "add_costs", "price_known", "price_of"]

logger = logging.getLogger("lmstream")

#: `billed_as` of a model that runs on this machine: nothing is billed
FREE = "free"


class Cost(float):
    """A USD amount that is also its parts: `cost == 0.0012`, `cost.total`, `cost.input`,
    `cost.output`, `cost.cache_read` (cache reads are part of the input price).

    `cost.estimated` is True when the provider reported no token counts and lmstream counted
    them itself (`engine.call`): a budget still counts such a call, and says it guessed."""

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
    if "genai_prices" not in sys.modules:
        entry = _table_entry(gp_provider, model)
        if entry is not _MISSING:
            return entry is not None
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


# ------------------------------------------------------------------ the price table on disk
_MISSING: Any = object()
_table_lock = threading.Lock()
_table: dict[str, Any] | None = None  # {"stamp", "models": {"billed_as/model": rates | None}}


def _table_path() -> str:
    base = os.environ.get("LMSTREAM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lmstream"
    )
    return os.path.join(base, "prices.json")


def _stamp() -> str | None:
    """Which genai-prices data the table was made from (found without importing it)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("genai_prices")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    where = next(iter(spec.submodule_search_locations))
    try:
        data = os.stat(os.path.join(where, "data.py"))
    except OSError:
        return None
    return f"{where}|{data.st_size}|{data.st_mtime_ns}"


def _load_table() -> dict[str, Any]:
    global _table
    with _table_lock:
        if _table is None:
            table: dict[str, Any] = {"stamp": _stamp(), "models": {}}
            try:
                with open(_table_path(), "rb") as fh:
                    saved = json.loads(fh.read())
                if table["stamp"] is not None and saved.get("stamp") == table["stamp"]:
                    table["models"] = dict(saved["models"])
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                pass  # no table yet, or one made from other prices: genai-prices answers
            _table = table
        return _table


def _table_entry(billed_as: str, model: str) -> Any:
    """The saved rates (USD per token) of this model; None when genai-prices has no price for
    it; `_MISSING` when the table does not know, or the price is not flat."""
    entry = _load_table()["models"].get(f"{billed_as}/{model}", _MISSING)
    if entry is None or (isinstance(entry, dict) and entry.get("flat")):
        return entry
    return _MISSING


def _remember(billed_as: str, model: str) -> None:
    """After genai-prices priced this model: keep its flat rates for later processes."""
    table = _load_table()
    key = f"{billed_as}/{model}"
    if key in table["models"] or table["stamp"] is None:
        return
    try:
        entry = _rates(billed_as, model)
    except Exception as exc:  # a shape of price this code does not read: genai-prices answers each time
        logger.debug("lmstream: not keeping the price of %s: %s", key, exc)
        entry = {"flat": False}
    with _table_lock:
        table["models"][key] = entry
        path = _table_path()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"stamp": table["stamp"], "models": table["models"]}, fh)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only home: prices still come from genai-prices
            logger.debug("lmstream: price table not saved: %s", exc)


def _rates(billed_as: str, model: str) -> dict[str, Any] | None:
    import genai_prices
    from genai_prices.types import ModelPrice, TieredPrices

    def calc(**usage: int) -> Any:
        return genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=billed_as)

    try:
        base = calc(input_tokens=0, output_tokens=0)
    except (LookupError, ValueError):
        return None
    prices = base.model.prices
    if not isinstance(prices, ModelPrice) or any(isinstance(v, TieredPrices) for v in vars(prices).values()):
        return {"flat": False}  # tiers or dated prices: genai-prices prices every call
    m = 1_000_000
    try:
        cache_read: float | None = float(calc(input_tokens=m, cache_read_tokens=m, output_tokens=0).input_price) / m
    except (LookupError, ValueError):
        cache_read = None
    return {
        "flat": True,
        "input": float(calc(input_tokens=m, output_tokens=0).input_price) / m,
        "output": float(calc(input_tokens=0, output_tokens=m).output_price) / m,
        "cache_read": cache_read,
    }


def _from_rates(rates: dict[str, Any], inp: int, cached: int, out: int) -> Cost | None:
    if cached and rates.get("cache_read") is None:
        return None
    cache_part = cached * float(rates.get("cache_read") or 0.0)
    input_usd = (inp - cached) * float(rates["input"]) + cache_part
    output_usd = out * float(rates["output"])
    return Cost(input_usd + output_usd, input=input_usd, output=output_usd, cache_read=cache_part)


def price_of(billed_as: str | None, model: str, usage: Counts, *, batch: bool = False) -> Cost | None:
    """The USD cost of `usage` on `model` as `billed_as` bills it, or None when no price is known.

    `batch`: answered through the provider's batch API, at its batch price where one is published."""
    if billed_as == FREE:
        return ZERO
    if usage.input_tokens is None or usage.output_tokens is None:
        return None  # the provider did not report its tokens: the cost is unknown, not 0
    if billed_as is None:
        return None
    inp = usage.input_tokens or 0
    cached = min(usage.cached_tokens or 0, inp)
    if not batch and "genai_prices" not in sys.modules:  # the saved flat rates, when this machine has them
        entry = _table_entry(billed_as, model)
        if entry is None:
            return None
        if entry is not _MISSING:
            cost = _from_rates(entry, inp, cached, usage.output_tokens or 0)
            if cost is not None:
                return cost
    if not price_known(billed_as, model):
        return None
    import genai_prices

    gp_provider = billed_as
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
    if not batch:
        _remember(billed_as, model)
    return Cost(
        float(calc.total_price),
        input=float(calc.input_price),
        output=float(calc.output_price),
        cache_read=cache_part,
    )
