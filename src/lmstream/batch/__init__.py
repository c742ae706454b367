"""Many requests through one processor: `await lmrp.batch(requests, concurrency=N, on_result=...)`
and `lmstream batch INPUT.jsonl -o OUTPUT.jsonl` (resumable, with progress and spend).

Requests are strings (prompts), dicts like the command line's input lines, or `BatchRequest`s;
results (`BatchResult`) reach `on_result` as each request finishes, in that order.

Modules: `runner` (the bounded, adaptive run of a batch through a processor), `limiter` (how
many run at once: additive increase, multiplicative decrease), `requests` (the input, checked
before anything is sent), `results` (the output, appended per request, safe to resume),
`progress` (the bar or line on standard error), `provider` (`--provider-batch`: the provider's
own batch API), `cli` (`lmstream batch`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from ..budget import Budget, as_budget
from .requests import BatchRequest, coerce_requests, read_requests
from .results import BatchResult
from .runner import BatchStats, OnResult, Processor, run_batch

__all__ = ["BatchRequest", "BatchResult", "BatchStats", "batch", "read_requests", "run_batch"]


async def batch(
    lmrp: Processor,
    requests: Iterable[Any],
    *,
    concurrency: int | None = None,
    on_result: OnResult | None = None,
    budget: float | Budget | None = None,
) -> list[BatchResult]:
    """Run every request; returns the results in the order they finished.

    A failed request is a result with `.error` (the batch goes on). With `budget=` (USD), no
    request starts once it is spent: the requests already running finish (their results reach
    `on_result`), then `BudgetExceededError` is raised.
    """
    reqs = coerce_requests(requests)
    results: list[BatchResult] = []

    async def collect(result: BatchResult) -> None:
        results.append(result)
        if on_result is not None:
            maybe = on_result(result)
            if inspect.isawaitable(maybe):
                await maybe

    stats = await run_batch(lmrp, reqs, concurrency=concurrency, on_result=collect, budget=as_budget(budget))
    if stats.stopped is not None:
        raise stats.stopped
    return results
