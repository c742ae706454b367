"""Switching between models within one model call: fallback chains and pools of deployments.

`run_chain` tries candidates (invokers, known here by a protocol) in order. A failure that
another model may not share (a refused connection, 408/429/5xx or "overloaded" after the
candidate's own retries, an in-band error frame, a stall, no first token in time, a context
window too small) moves on to the next one; a failure that would happen anywhere (a malformed
request, a bad hyperparameter, a spent budget) ends the call. Before the first content event
the switch is invisible: the events of the failed attempt were only status events. After it,
`policy` decides: `"error"` raises the interruption (its partial output), `"restart"` emits a
`reset` event and the next model answers afresh (the accumulator starts empty), `"continue"`
emits a `reset` that discards nothing and the next model continues the text from an assistant
prefix (the accumulator starts from the partial text, in the same text block).

Every attempt is recorded on the request (`RequestContext.attempts`: the `done` event lists
them) and its usage is summed into the call's output, with the parts kept in
`LMOutput.attempts`. Each candidate's own model call is observed (one span per attempt) and
charged to the budget by the candidate itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    BudgetExceededError,
    ConfigurationError,
    ContextOverflowError,
    LMStreamError,
    LMTimeoutError,
    OutputParserError,
    ProviderError,
    StreamInterruptedError,
)
from ..event_values import ResetValue
from ..prompt import Message
from ..types import EventType, LMOutput, TokenUsage
from .deltas import CallParams
from .lifecycle import Carry, RequestContext

__all__ = ["POLICIES", "CallPlan", "Candidate", "FirstTokenTimeoutError", "run_chain", "switch_reason"]

logger = logging.getLogger("lmstream")

#: what happens when a model fails after content was streamed
POLICIES = ("error", "restart", "continue")

#: HTTP statuses that say "this deployment, now" rather than "this request": another model may answer
_SWITCH_STATUSES = frozenset({401, 403, 404, 408, 409, 425, 429})


class Candidate(Protocol):
    """What a chain needs of an invoker."""

    @property
    def default_hyperparameters(self) -> dict[str, Any]: ...

    @property
    def model_id(self) -> str: ...

    def accepts_prefix(self, prefix: str) -> bool: ...

    @property
    def context_window(self) -> int | None: ...


#: how the engine runs one candidate's model call (`engine.call.call_model`)
CallFn = Callable[[RequestContext, Any, list[Message], CallParams, "Carry | None"], Awaitable[LMOutput]]


@dataclass(slots=True)
class CallPlan:
    """A composite invoker's answer to "who takes this call": its members in the order to try
    them, what happens after a member failed mid-answer (`policy`), the first-token timeout,
    and hooks told of each member's start, end and failure (by position in `candidates`: a
    pool counts requests in flight and cools a failed deployment down)."""

    candidates: Sequence[Candidate]
    policy: str = "error"
    first_token_timeout: float | None = None
    on_failure: Callable[[int, BaseException], None] | None = None
    on_start: Callable[[int], None] | None = None
    on_end: Callable[[int], None] | None = None


class FirstTokenTimeoutError(LMTimeoutError):
    """No content event came within a fallback chain's `first_token_timeout`."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def switch_reason(exc: BaseException) -> str | None:
    """Why the next candidate may succeed where this one failed (a short phrase), or None when
    the failure would happen with any model (the chain then ends with it)."""
    if isinstance(exc, (BudgetExceededError, ConfigurationError, OutputParserError)):
        return None
    if isinstance(exc, ContextOverflowError):
        return "its context window is too small"
    if isinstance(exc, FirstTokenTimeoutError):
        return "no first token in time"
    if isinstance(exc, StreamInterruptedError):
        return "its stream broke"
    if isinstance(exc, (LMTimeoutError, TimeoutError)):
        return "it timed out"
    if isinstance(exc, OSError):
        return "the connection failed"
    if isinstance(exc, ProviderError):
        status = exc.status_code
        if status is None:
            return "it failed (connection or in-band error)"
        if status >= 500:
            return "it is overloaded" if status == 529 or "overload" in str(exc).lower() else f"HTTP {status}"
        if status in _SWITCH_STATUSES:
            return "it is rate-limited" if status == 429 else f"HTTP {status}"
        return None  # 400, 413, 422, ...: the request itself is wrong
    if isinstance(exc, LMStreamError):
        return "it failed" if exc.retryable else None
    return None


def _has_content(out: LMOutput) -> bool:
    return bool(out.text or out.thinking or out.tool_calls)


def _fits(cand: Candidate, exc: ContextOverflowError, failed_window: int | None) -> bool:
    """A larger window than the one that overflowed (known on both sides, or the prompt's size)."""
    window = cand.context_window
    if window is None:
        return False
    need = failed_window if failed_window is not None else exc.prompt_tokens
    return need is not None and window > need


def sum_usage(parts: Sequence[TokenUsage]) -> TokenUsage:
    """The attempts' usage added up. An attempt that reported nothing and produced nothing (a
    refused connection, a 429) costs nothing and is left out; otherwise a count stays known only
    while every attempt reported it (`TokenUsage.add`)."""
    total: TokenUsage | None = None
    for u in parts:
        if total is None:
            total = TokenUsage(u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens, u.cost)
        else:
            total.add(u)
    return total if total is not None else TokenUsage()


def _empty(u: TokenUsage) -> bool:
    return u.input_tokens is None and u.output_tokens is None and not u.cost


async def _timed(
    call: CallFn,
    cand: Candidate,
    ctx: RequestContext,
    msgs: list[Message],
    params: CallParams,
    carry: Carry | None,
    first_token_timeout: float | None,
) -> LMOutput:
    """One candidate's call; without a content event within `first_token_timeout` it is
    cancelled (its connection closed) and `FirstTokenTimeoutError` raised."""
    if first_token_timeout is None:
        return await call(ctx, cand, msgs, params, carry)
    outer = ctx.on_first
    timer = asyncio.timeout(first_token_timeout)

    def first() -> None:
        timer.reschedule(None)
        if outer is not None:
            outer()

    ctx.on_first = first
    try:
        async with timer:
            return await call(ctx, cand, msgs, params, carry)
    except TimeoutError as exc:
        if not timer.expired():
            raise  # the candidate's own timeout
        raise FirstTokenTimeoutError(
            f"{cand.model_id}: no first token within {first_token_timeout}s (first_token_timeout)"
        ) from exc
    finally:
        ctx.on_first = outer


def _record(ctx: RequestContext, cand: Candidate, outcome: str, usage: TokenUsage, exc: BaseException | None) -> None:
    if getattr(cand, "is_chain", False):
        return  # a nested chain or pool recorded its own attempts
    entry: dict[str, Any] = {
        "model": cand.model_id,
        "outcome": outcome,
        "output_tokens": usage.output_tokens,
        "usage": usage.to_dict(),
    }
    if exc is not None:  # the kind, never the message (it may name an internal address)
        entry["error"] = type(exc).__name__
        status = getattr(exc, "status_code", None)
        if status is not None:
            entry["status_code"] = status
    ctx.attempts.append(entry)


def _why(exc: BaseException) -> str:
    """A failure in a few words for a `reset` reason a browser may show (no message, no URL)."""
    return switch_reason(exc) or type(exc).__name__


async def run_chain(
    ctx: RequestContext,
    msgs: list[Message],
    params: CallParams,
    plan: CallPlan,
    call: CallFn,
    carry: Carry | None = None,
) -> LMOutput:
    """One model call tried on the plan's candidates in order (see the module's docstring),
    each candidate's call run by `call`.

    `carry`: the call continues that text (a chain nested in a continuing chain).
    """
    candidates, policy, first_token_timeout = plan.candidates, plan.policy, plan.first_token_timeout
    on_failure, on_start, on_end = plan.on_failure, plan.on_start, plan.on_end
    if not candidates:
        raise ConfigurationError("a fallback chain needs at least one invoker")
    first_record = len(ctx.attempts)
    parts: list[TokenUsage] = []
    announced = carry is not None  # the consumer knows of a switch: every later one is announced too
    last: BaseException | None = None  # the failure not yet announced (before content)
    prev: Candidate | None = None
    overflow: tuple[ContextOverflowError, int | None] | None = None
    n = len(candidates)
    for i, cand in enumerate(candidates):
        if overflow is not None and not _fits(cand, *overflow):
            continue
        if announced and prev is not None and last is not None:
            await _reset(ctx, f"{prev.model_id} failed ({_why(last)}); {cand.model_id} takes over", prev, cand, 0)
        cmsgs = msgs if carry is None else [*msgs, Message.assistant(carry.text)]
        cparams = params.under(cand.default_hyperparameters)
        try:
            if on_start is not None:
                on_start(i)
            try:
                out = await _timed(call, cand, ctx, cmsgs, cparams, carry, first_token_timeout)
            finally:
                if on_end is not None:
                    on_end(i)
        except StreamInterruptedError as exc:
            partial = exc.partial_output
            _record(ctx, cand, "interrupted", partial.usage, exc)
            parts.append(partial.usage)
            if on_failure is not None:
                on_failure(i, exc)
            unchanged = carry is not None and partial.text == carry.text and not partial.tool_calls
            if not _has_content(partial) or unchanged:
                last, prev = exc, cand  # nothing new reached the consumer: as a failure before content
                continue
            if policy == "error" or i == n - 1:
                raise
            nxt = candidates[i + 1]
            mode, why_not = _mode(policy, partial, nxt)
            reason = f"{cand.model_id} failed after streaming ({_why(exc.cause or exc)})"
            if mode == "continue":
                carry = Carry(partial.text, exc.text_block)
                await _reset(ctx, f"{reason}; {nxt.model_id} continues the answer", cand, nxt, 0)
            else:
                carry = None
                note = f"; cannot continue: {why_not}" if why_not else ""
                await _reset(ctx, f"{reason}{note}; {nxt.model_id} answers afresh", cand, nxt, len(partial.text))
            announced, last, prev = True, None, cand
            continue
        except Exception as exc:
            why = switch_reason(exc)
            _record(ctx, cand, "timeout" if isinstance(exc, TimeoutError) else "error", TokenUsage(), exc)
            if why is not None and on_failure is not None:
                on_failure(i, exc)
            if why is None or i == n - 1:
                raise
            logger.info("%s: %s (%s); trying %s", cand.model_id, why, exc, candidates[i + 1].model_id)
            if isinstance(exc, ContextOverflowError) and overflow is None:
                overflow = (exc, exc.context_window or cand.context_window)
            last, prev = exc, cand
            continue
        _record(ctx, cand, "ok", out.usage, None)
        parts.append(out.usage)
        out.usage = sum_usage([u for u in parts if not _empty(u)] or parts[-1:])
        out.attempts = ctx.attempts[first_record:]
        return out
    assert last is not None  # every candidate was skipped or failed before content
    if isinstance(last, ContextOverflowError):
        raise ContextOverflowError(
            f"{last} (no fallback model has a larger context window)",
            prompt_tokens=last.prompt_tokens,
            max_tokens=last.max_tokens,
            context_window=last.context_window,
        ) from last
    raise last


def _mode(policy: str, partial: LMOutput, nxt: Candidate) -> tuple[str, str | None]:
    """("continue" | "restart", why a continuation was refused)."""
    if policy != "continue":
        return "restart", None
    if partial.tool_calls:
        return "restart", "the partial answer holds a tool call"
    if not partial.text:
        return "restart", "the partial answer has no text yet"
    if not nxt.accepts_prefix(partial.text):
        if nxt.accepts_prefix("a"):
            return "restart", f"{nxt.model_id} does not continue this assistant prefix (it ends in whitespace)"
        return "restart", f"{nxt.model_id} does not continue an assistant prefix"
    return "continue", None


async def _reset(ctx: RequestContext, reason: str, frm: Candidate, to: Candidate, discarded: int) -> None:
    logger.info("%s", reason)
    value: ResetValue = {"reason": reason, "from": frm.model_id, "to": to.model_id, "discarded": discarded}
    await ctx.emit(value, EventType.RESET, step=ctx.step)
