"""Run many requests through one processor, a bounded number at a time, results as they finish.

Each result is handed to `on_result` the moment its request finishes (the command line writes
it to the output file there), so an interrupt loses only the requests still running. A failed
request is a result with `error`; only a 429 that outlived the invoker's own retries is sent
again (up to `REQUEUES` times) after the back-off, since the server asked to wait.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from .._redact import redact
from ..budget import Budget
from ..engine.request_stream import RequestStream
from ..errors import BudgetExceededError, ConfigurationError, LMTimeoutError, RateLimitError, StreamInterruptedError
from ..event_values import ResetValue, UsageValue
from ..events import EventType
from ..invokers.base import BaseLMInvoker
from ..prompt import PromptBuilder, text_key
from ..retry import retry_listener
from .limiter import AdaptiveLimiter
from .requests import BatchRequest
from .results import BatchResult

__all__ = ["BatchStats", "OnResult", "Processor", "default_concurrency", "request_kwargs", "run_batch"]


class Processor(Protocol):
    """What a batch needs of an `LMRequestProcessor` (known by shape: the processor imports the batch)."""

    prompt_builder: PromptBuilder
    lm_invoker: BaseLMInvoker
    output_parser: Any

    @property
    def tools(self) -> Sequence[Any]: ...

    @property
    def response_schema(self) -> dict[str, Any] | None: ...

    def stream(self, prompt_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> RequestStream[Any]: ...


OnResult = Callable[[BatchResult], Awaitable[None] | None]

#: a request refused with 429 after all the invoker's retries goes back in line this often (after
#: the back-off), so it fails only when the provider refused it (1 + 3 retries) x 9 times in a row
REQUEUES = 8
#: remote providers start here unless told otherwise (the limiter narrows it on 429)
DEFAULT_REMOTE_CONCURRENCY = 16
#: the embedded model without a parallel engine runs one sequence
DEFAULT_LOCAL_SEQUENCES = 1
_RATE_STATUSES = (429, 529)


@dataclass(slots=True)
class BatchStats:
    """Counts for progress and the summary (updated as each result arrives)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    cost_unknown: int = 0
    started: float = field(default_factory=time.monotonic)
    not_sent: int = 0
    #: failures that a re-run may cure (`--retry-failed` is suggested only for these)
    retryable_failed: int = 0
    priced: int = 0  # results with a known cost, for the cost a request in flight may add
    stopped: BudgetExceededError | None = None
    limiter: AdaptiveLimiter | None = None

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.skipped - self.finished)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def tokens_per_s(self) -> float:
        t = self.elapsed
        return self.output_tokens / t if t > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.finished / self.elapsed if self.elapsed > 0 else 0.0
        return self.remaining / rate if rate > 0 else None

    @property
    def spend(self) -> float | None:
        """USD so far; None when no answer had a known price."""
        return self.cost if self.cost or not self.cost_unknown else None

    def add(self, r: BatchResult) -> None:
        if r.ok:
            self.done += 1
        else:
            self.failed += 1
            if r.error is not None and r.error.get("retryable", True):
                self.retryable_failed += 1
        u = r.usage or {}
        self.input_tokens += u.get("input_tokens") or 0
        self.output_tokens += u.get("output_tokens") or 0
        if r.cost is None:
            if r.usage is not None:  # billed, at a price nobody knows (a failure before any token is not)
                self.cost_unknown += 1
        else:
            self.cost += r.cost
            self.priced += 1

    @property
    def cost_per_request(self) -> float:
        """The mean cost of a priced result so far (0 before the first)."""
        return self.cost / self.priced if self.priced else 0.0


def check_hyperparameters(invoker: BaseLMInvoker, requests: Sequence[BatchRequest]) -> None:
    """Every line's hyperparameters checked before anything is sent: a bad one found halfway
    would leave a batch half paid for and half failed with the same error."""
    bad: list[str] = []
    for req in requests:
        if req.hyperparameters:
            try:
                invoker.validate_hyperparameters(req.hyperparameters)
            except ConfigurationError as exc:
                bad.append(f"id {req.id}: {exc}")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ConfigurationError(
            f"{len(bad)} request(s) have hyperparameters {invoker.model_id} does not take; nothing was sent: "
            + "; ".join(bad[:3])
            + more
        )


def default_concurrency(invoker: Any, asked: int | None) -> tuple[int, bool]:
    """(ceiling, adaptive): the embedded model runs up to its engine's sequences (`parallel`),
    remote providers up to `asked` (default 16), narrowed on 429."""
    if asked is not None and (isinstance(asked, bool) or not isinstance(asked, int) or asked < 1):
        raise ConfigurationError(f"concurrency must be an int >= 1, got {asked!r}")
    if getattr(invoker, "provider", None) == "local":
        parallel = getattr(invoker, "parallel", None)
        seqs = parallel if isinstance(parallel, int) and parallel > 0 else DEFAULT_LOCAL_SEQUENCES
        return (min(asked, seqs) if asked else seqs), False
    return asked or DEFAULT_REMOTE_CONCURRENCY, True


async def run_batch(
    lmrp: Processor,
    requests: Sequence[BatchRequest],
    *,
    concurrency: int | None = None,
    on_result: OnResult | None = None,
    budget: Budget | None = None,
    stats: BatchStats | None = None,
) -> BatchStats:
    """Run `requests`; each result goes to `on_result` as it finishes. Returns the counts.

    With `budget`, no request starts once it is spent: those left are counted in `not_sent`
    and `stats.stopped` holds the `BudgetExceededError` (the caller decides whether to raise)."""
    ceiling, adaptive = default_concurrency(lmrp.lm_invoker, concurrency)
    limiter = AdaptiveLimiter(ceiling, adaptive=adaptive)
    stats = stats or BatchStats(total=len(requests))
    stats.limiter = limiter
    slot = text_key(lmrp.prompt_builder)
    invoker = lmrp.lm_invoker
    if budget is not None:
        for billed_as, model, model_id in invoker.priced_models():  # a price must be known before
            budget.check(billed_as, model, model_id)  # anything runs (each model a chain or pool may reach)
    check_hyperparameters(invoker, requests)

    def on_retry(exc: BaseException, delay: float) -> None:
        if getattr(exc, "status_code", None) in _RATE_STATUSES:
            limiter.rate_limited_by_server(getattr(exc, "retry_after", None) or delay)

    async def deliver(result: BatchResult) -> None:
        stats.add(result)
        if budget is not None:
            budget.charge(result.cost)
        if on_result is not None:
            maybe = on_result(result)
            if inspect.isawaitable(maybe):
                await maybe

    async def one(req: BatchRequest) -> None:
        retry_listener.set(on_retry)
        ok, held = False, True
        try:
            for round_ in range(REQUEUES + 1):
                try:
                    result = await _run_one(lmrp, req, slot)
                except RateLimitError as exc:
                    if round_ == REQUEUES:
                        result = _failed(req, exc, 0.0)
                        break
                    held = False
                    limiter.release(False)
                    limiter.rate_limited_by_server(exc.retry_after)
                    await limiter.acquire()
                    held = True
                    continue
                except BudgetExceededError as exc:  # the processor's own budget: not sent, not failed
                    stats.stopped = stats.stopped or exc
                    stats.not_sent += 1
                    return
                break
            ok = result.ok
            await deliver(result)
        finally:
            if held:
                limiter.release(ok)

    in_flight = 0

    async def counted(req: BatchRequest) -> None:
        nonlocal in_flight
        try:
            await one(req)
        finally:
            in_flight -= 1

    try:
        async with asyncio.TaskGroup() as tg:
            for i, req in enumerate(requests):
                await limiter.acquire()
                # what is spent plus what the requests in flight are likely to add: starting one
                # more past the limit would overshoot by more than the requests already running
                projected = (in_flight + 1) * stats.cost_per_request
                if stats.stopped is None and budget is not None and budget.spent + projected > budget.limit:
                    stats.stopped = _exceeded(budget)
                if stats.stopped is not None:
                    limiter.release(False)
                    stats.not_sent += len(requests) - i
                    break
                in_flight += 1  # counted here, not when the task first runs: the loop may go on first
                tg.create_task(counted(req))
    except BaseExceptionGroup as group:  # a failing on_result (disk full?) stops the batch: raise it
        raise group.exceptions[0] from None
    if stats.stopped is None and budget is not None and stats.not_sent:
        stats.stopped = _exceeded(budget)
    return stats


def _exceeded(budget: Budget) -> BudgetExceededError:
    """The stop, without a figure of what was spent: the requests still running add to it, and
    the summary prints the one final spend."""
    return BudgetExceededError(
        f"budget of ${budget.limit:.4f} reached (with the requests in flight); the requests left were not sent",
        limit=budget.limit,
        spent=budget.spent,
    )


def request_kwargs(req: BatchRequest, slot: str | None) -> dict[str, Any]:
    """`process()`/`stream()` arguments for one request (`slot`: the template key a plain prompt fills)."""
    kw: dict[str, Any] = {}
    if req.prompt is not None and slot is None:  # no template key: the prompt is the user message
        kw["prompt_kwargs"], kw["extra_contents"] = {}, [req.prompt]
    elif req.prompt is not None:
        kw["prompt_kwargs"] = {slot: req.prompt}
    else:
        kw["prompt_kwargs"] = req.prompt_kwargs
    if req.files:
        kw["extra_contents"] = [*kw.get("extra_contents", []), *req.files]
    if req.history:
        kw["history"] = req.history
    if req.hyperparameters:
        kw["hyperparameters"] = req.hyperparameters
    return kw


async def _run_one(lmrp: Processor, req: BatchRequest, slot: str | None) -> BatchResult:
    """One request as a result: its text (or parsed value), usage, timings, or its error."""
    t0 = time.perf_counter()
    texts: list[str] = []
    done: dict[str, Any] | None = None
    try:
        async with lmrp.stream(**request_kwargs(req, slot)) as stream:
            async for event in stream:
                if event.type == EventType.RESPONSE and isinstance(event.value, str):
                    texts.append(event.value)
                elif event.type == EventType.RESET and isinstance(event.value, dict):
                    drop = cast(ResetValue, event.value)["discarded"]  # a fallback restarted: the partial is void
                    if drop:
                        kept = "".join(texts)
                        texts = [kept[: max(0, len(kept) - drop)]]
                elif event.type == EventType.DONE:
                    done = event.metadata
            value = await stream.result()
    except (RateLimitError, BudgetExceededError):
        raise
    except Exception as exc:
        return _failed(req, exc, time.perf_counter() - t0, "".join(texts) or None)
    meta = done or {}
    usage: UsageValue | None = meta.get("usage")
    parsed = lmrp.output_parser is not None
    cost = (usage or {}).get("cost")
    return BatchResult(
        req.id,
        text=None if parsed else "".join(texts),
        value=value if parsed else None,
        parsed=parsed,
        usage=usage,
        finish_reason=meta.get("finish_reason"),
        duration=meta.get("duration"),
        time_to_first_token=meta.get("time_to_first_token"),
        metadata=req.metadata,
        cost=None if cost is None else float(cost["total"]),
    )


def retryable(exc: BaseException) -> bool:
    """Whether running the request again may succeed: a cut stream, a timeout, a dropped
    connection or a provider error it calls transient; never bad input, a refused key or a
    prompt too long for the model (those fail the same way every time)."""
    if isinstance(exc, (StreamInterruptedError, LMTimeoutError, OSError)):
        return True
    return bool(getattr(exc, "retryable", False))


def _failed(req: BatchRequest, exc: BaseException, duration: float, text: str | None = None) -> BatchResult:
    usage = None
    cost = None
    if isinstance(exc, StreamInterruptedError):  # what streamed before the break was billed
        u = exc.partial_output.usage
        usage = u.to_dict()
        cost = None if u.cost is None else float(u.cost)
    return BatchResult(
        req.id,
        text=text,
        usage=usage,
        duration=duration,
        error={"type": type(exc).__name__, "message": redact(str(exc)), "retryable": retryable(exc)},
        metadata=req.metadata,
        cost=cost,
    )
