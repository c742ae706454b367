"""One model call's attempts: the total timeout around them, and the retry loop between them.

Retries happen only before the first token; once tokens were emitted a failure is a
`StreamInterruptedError` carrying them (never a duplicate). The invoker is known here by a
protocol, so the engine imports no adapter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from .. import _observe
from ..errors import (
    ContextOverflowError,
    LMStreamError,
    LMTimeoutError,
    OutputParserError,
    ProviderError,
    StreamInterruptedError,
)
from ..prompt import Message
from ..retry import RetryConfig, notify_retry
from ..types import LMOutput
from .deltas import CallParams, Delta
from .lifecycle import Carry, RequestContext, new_accumulator, pour

__all__ = ["Attempter", "run_attempts"]

logger = logging.getLogger("lmstream")


class Attempter(Protocol):
    """What the attempt loop needs of an invoker."""

    model_name: str
    retry_config: RetryConfig

    @property
    def provider(self) -> str: ...

    @property
    def model_id(self) -> str: ...

    def output_limit(self) -> int | None: ...

    def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Delta]: ...


async def run_attempts(
    inv: Attempter,
    ctx: RequestContext,
    msgs: list[Message],
    params: CallParams,
    call: _observe.CallHandle | None,
    carry: Carry | None = None,
) -> LMOutput:
    """The attempts of one model call, within `RetryConfig.timeout` when one is set. `carry`:
    the call continues that text (a fallback's assistant-prefix continuation)."""
    cfg = inv.retry_config
    if cfg.timeout is None:
        return await _attempts(inv, ctx, msgs, params, cfg, call, carry)
    try:
        async with asyncio.timeout(cfg.timeout):
            return await _attempts(inv, ctx, msgs, params, cfg, call, carry)
    except LMTimeoutError:
        raise  # the idle timeout (or a provider's own): already says which
    except TimeoutError as exc:
        raise LMTimeoutError(
            f"{inv.model_id}: request did not finish within the total timeout of {cfg.timeout}s (RetryConfig.timeout)"
        ) from exc


async def _attempts(
    inv: Attempter,
    ctx: RequestContext,
    msgs: list[Message],
    params: CallParams,
    cfg: RetryConfig,
    call: _observe.CallHandle | None = None,
    carry: Carry | None = None,
) -> LMOutput:
    attempt = 0
    while True:
        acc = new_accumulator(ctx, inv.model_name, params.response_schema is not None, carry)
        if call is not None:  # observability seam: first-chunk time and chunk count are read at the end
            call.attempt(acc)
        try:
            out = await pour(ctx, acc, inv.stream_deltas(msgs, params))
        except StreamInterruptedError:
            raise
        except (LMStreamError, OSError) as exc:
            if isinstance(exc, ContextOverflowError) and exc.max_tokens is None:
                exc.max_tokens = params.get("max_tokens")
            if acc.started:
                raise acc.interrupted(exc) from exc
            err = (
                exc
                if isinstance(exc, LMStreamError)
                else ProviderError(f"connection failed: {exc}", provider=inv.provider)
            )
            retryable = getattr(err, "retryable", False) or isinstance(exc, OSError)
            if not retryable or attempt >= cfg.max_retries:
                if err is exc:
                    raise
                raise err from exc
            attempt += 1
            delay = cfg.delay(attempt, getattr(err, "retry_after", None))
            logger.info("%s: %s; retry %d/%d in %.2fs", inv.model_id, err, attempt, cfg.max_retries, delay)
            if call is not None:  # observability seam: a retry is a span event
                call.retry(attempt, err, delay)
            notify_retry(err, delay)
            await asyncio.sleep(delay)
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if acc.started:
                raise acc.interrupted(exc) from exc
            raise
        if params.response_schema is not None and not out.tool_calls:
            from ..structured import truncated_output, validate_structured

            try:
                out.structured_output = validate_structured(out.text, params.response_schema, params.schema_model)
            except OutputParserError:
                if out.finish_reason != "length":
                    raise
                raise truncated_output(out.text, params.get("max_tokens") or inv.output_limit()) from None
        return out
