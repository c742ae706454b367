"""One model call, run by the engine alone; and one model call as a request of its own.

`call_model` is the one place a model call runs: the request's budget is checked before it and
charged after it (an interrupted call's partial output too), the call is observed (one span,
every attempt), priced, and its attempts run (`attempts`). A composite invoker (a fallback
chain, a pool of deployments) answers `call_plan()` with its members and the engine switches
among them (`fallback`), each member's call coming back here.

The adapter is a stateless leaf: it gets the messages and a `CallParams` (hyperparameters,
tools, response schema) per call and yields deltas. Which request a call belongs to is the
`RequestContext` passed in, never the task it happens to run in.

`invoke` and `stream` are one call as a request of its own (ending with `done` or `error`):
what `BaseLMInvoker.invoke()` and `.stream()` hand over to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from .. import _observe
from ..cost import price_of
from ..errors import StreamInterruptedError
from ..prompt import Message
from ..types import LMOutput
from .attempts import Attempter, run_attempts
from .deltas import CallParams, ToolSpec
from .fallback import CallPlan, run_chain
from .lifecycle import Carry, RequestContext, run_request
from .request_stream import RequestStream

if TYPE_CHECKING:
    from ..events import EventEmitter

__all__ = ["Emitter", "Invoker", "ModelCallStream", "call_model", "invoke", "prepare", "stream"]

#: the emitter a call that is a request of its own sends its events to, and the stream it is
#: (names for `BaseLMInvoker`'s signatures: the invoker passes them through without reading them)
Emitter: TypeAlias = "EventEmitter"
ModelCallStream: TypeAlias = RequestStream[LMOutput]


class Invoker(Attempter, Protocol):
    """What the engine needs of an invoker (`BaseLMInvoker` is one)."""

    default_hyperparameters: dict[str, Any]
    tools: list[Any]
    response_schema: dict[str, Any] | None
    _schema_model: Any

    def call_plan(self) -> CallPlan | None: ...

    def validate_hyperparameters(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def _prepare(
        self, messages: str | Sequence[Message | Mapping[str, Any]], hyperparameters: Mapping[str, Any] | None
    ) -> tuple[list[Message], dict[str, Any]]: ...


async def call_model(
    ctx: RequestContext, inv: Any, msgs: list[Message], params: CallParams, carry: Carry | None = None
) -> LMOutput:
    """One model call of request `ctx` (a step of its tool loop, or one member of a chain).
    `carry`: continue that text (the last message is then the assistant's prefix)."""
    plan = inv.call_plan()
    if plan is not None:  # a chain or a pool: the engine switches among its members
        return await run_chain(ctx, msgs, params, plan, call_model, carry)
    budget = ctx.budget
    if budget is not None:
        budget.check(inv.billed_as, inv.model_name, inv.model_id)
    # observability seam (lmstream.otel): one span per model call, all attempts; None when tracing is off
    obs = _observe.current()
    call = obs.call_started(inv, msgs, params, ctx.request_id) if obs is not None else None
    try:
        out = await run_attempts(inv, ctx, msgs, params, call, carry)
    except BaseException as exc:
        if isinstance(exc, StreamInterruptedError):  # what streamed was billed
            _price(inv, msgs, exc.partial_output)
            if budget is not None:
                budget.charge(exc.partial_output.usage.cost)
        if call is not None:
            call.end(None, exc)
        raise
    _price(inv, msgs, out)
    if budget is not None:
        budget.charge(out.usage.cost)
    if call is not None:
        call.end(out, None)
    return out


def _price(inv: Any, msgs: list[Message], out: LMOutput) -> None:
    """`usage.cost` from the provider's published prices (`lmstream.cost`; None when unknown).

    A priced model whose server reported no token counts (llama_cpp.server behind a priced id)
    is priced on lmstream's own count (`cost.estimated` says so): a budget that counted nothing
    would let such calls spend without limit."""
    usage = out.usage
    cost = price_of(inv.billed_as, inv.model_name, usage)
    if cost is None and (usage.input_tokens is None or usage.output_tokens is None):
        counts = _Counted(
            usage.input_tokens if usage.input_tokens is not None else _count(inv, msgs),
            usage.output_tokens if usage.output_tokens is not None else _output_tokens(inv, out),
        )
        cost = price_of(inv.billed_as, inv.model_name, counts)
        if cost is not None:
            cost.estimated = True
    usage.cost = cost


class _Counted:
    """Token counts lmstream made itself (the provider reported none)."""

    __slots__ = ("input_tokens", "output_tokens")
    cached_tokens = None

    def __init__(self, input_tokens: int, output_tokens: int) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


def _output_tokens(inv: Any, out: LMOutput) -> int:
    """The answer's tokens by the invoker's own count (its tokenizer, or its estimate that errs
    high): the text, the thinking and the tool calls' arguments, as the model wrote them."""
    parts = [out.text, out.thinking, *(json.dumps(c.arguments) for c in out.tool_calls)]
    written = "".join(p for p in parts if p)
    if not written:
        return 0
    return _count(inv, [Message(role="assistant", contents=[written])])


def _count(inv: Any, msgs: list[Message]) -> int:
    try:
        return max(0, int(inv.count_tokens(msgs)))
    except Exception:  # a tokenizer that cannot read these messages: about 3 bytes a token
        return sum(len(repr(m.contents).encode("utf-8")) // 3 + 4 for m in msgs)


def prepare(
    inv: Invoker,
    messages: str | Sequence[Message | Mapping[str, Any]],
    hyperparameters: Mapping[str, Any] | None = None,
    tools: Sequence[ToolSpec] | None = None,
    schema: tuple[dict[str, Any] | None, Any] | None = None,
) -> tuple[list[Message], CallParams]:
    """The messages and this call's parameters: `hyperparameters` over the invoker's defaults,
    checked; `tools` and `schema` (the JSON schema and its pydantic model) given for this call,
    else the ones the invoker was built with."""
    msgs, hyper = inv._prepare(messages, hyperparameters)
    json_schema, model = schema if schema is not None else (inv.response_schema, inv._schema_model)
    return msgs, CallParams(hyper, inv.tools if tools is None else tools, json_schema, model)


async def _alone(ctx: RequestContext, inv: Any, msgs: list[Message], params: CallParams) -> tuple[LMOutput, LMOutput]:
    ctx.step += 1
    out = await call_model(ctx, inv, msgs, params)
    return out, out


async def invoke(
    inv: Invoker,
    messages: str | Sequence[Message | Mapping[str, Any]],
    hyperparameters: Mapping[str, Any] | None = None,
    event_emitter: EventEmitter | None = None,
) -> LMOutput:
    """One model call as a request of its own: its events end with `done` (or `error`), even
    when it runs inside another request (a tool that asks a model is a request of its own)."""
    msgs, params = prepare(inv, messages, hyperparameters)
    ctx = RequestContext(event_emitter)
    ctx.register()
    return await run_request(ctx, lambda: _alone(ctx, inv, msgs, params))


def stream(
    inv: Invoker,
    messages: str | Sequence[Message | Mapping[str, Any]],
    hyperparameters: Mapping[str, Any] | None = None,
    event_emitter: EventEmitter | None = None,
) -> RequestStream[LMOutput]:
    """One model call as its own event stream (`async with invoker.stream(...) as s`)."""
    msgs, params = prepare(inv, messages, hyperparameters)
    return RequestStream(lambda ctx: run_request(ctx, lambda: _alone(ctx, inv, msgs, params)), event_emitter)
