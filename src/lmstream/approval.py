"""A person approves a tool call before it runs: approval requests inside the event stream.

A tool marked `requires_approval` does not run when the model calls it: the stream emits
`tool_approval_request` (value `{"approval_id", "tool_call_id", "name", "arguments"}`) and the
running request waits for `stream.approve(approval_id)` / `stream.deny(approval_id, reason)`
(or `lmstream.approval.answer(...)` from any task of the process). A denied call, or one nobody
answered within `approval_timeout`, never runs: the model is told it was denied, and its
`tool_result` event carries `"denied": true`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .engine.approvals import ApprovalError, Decision, answer, close, new_approval_id, register, waiting
from .event_values import ToolApprovalRequestValue
from .events import EventLevel, EventType
from .prompt import Message
from .tools import Tool, execute_tool_calls
from .types import ToolCall, ToolResult

if TYPE_CHECKING:
    from .engine.lifecycle import RequestContext

__all__ = [
    "ApprovalError",
    "Decision",
    "DeferredApproval",
    "PendingAnswer",
    "PendingStep",
    "answer",
    "denied_result",
    "execute_with_approval",
    "new_approval_id",
    "run_tool_step",
]


def denied_result(call: ToolCall, reason: str | None) -> ToolResult:
    """What the model is told about a call that did not run."""
    text = "The user denied this tool call; it did not run."
    if reason:
        text += f" Reason: {reason}"
    return ToolResult(call.id, call.name, text, denied=True)


async def _decide(ctx: RequestContext, t: Tool[..., Any] | None, call: ToolCall, timeout: float | None) -> Decision:
    if t is None or not t.needs_approval(call):
        return Decision(True)
    if ctx.emitter is None:
        return Decision(False, "nobody could be asked: the request has no event emitter")
    approval_id, future = register(ctx.request_id, call)
    try:
        value: ToolApprovalRequestValue = {
            "approval_id": approval_id,
            "tool_call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
        }
        await ctx.emit(value, EventType.TOOL_APPROVAL_REQUEST, EventLevel.INFO, step=ctx.step)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            close(approval_id, 410)
            return Decision(False, f"nobody answered within approval_timeout={timeout}s")
    finally:
        if waiting(approval_id):  # cancelled while waiting: the id is dead
            close(approval_id, 410)


async def execute_with_approval(
    ctx: RequestContext, tools: Sequence[Tool[..., Any]], calls: Sequence[ToolCall], timeout: float | None
) -> list[ToolResult]:
    """One step of the tool loop: each call that needs approval waits for its answer (the others
    run at once); denied calls come back as denial results, in the calls' order."""
    by_name = {t.name: t for t in tools}
    tool_list = list(tools)

    async def one(call: ToolCall) -> ToolResult:
        decision = await _decide(ctx, by_name.get(call.name), call, timeout)
        if not decision.approved:
            return denied_result(call, decision.reason)
        return (await execute_tool_calls(tool_list, [call]))[0]

    return list(await asyncio.gather(*(one(c) for c in calls)))


# ----------------------------------------------------------------------------- deferred approval
# A server cannot hold a request open while a person decides (the browser's answer comes as a new
# HTTP request, maybe to another node): the request ends at the approval request, its tool step is
# saved, and a later request continues it with the person's decisions.


@dataclass(slots=True)
class PendingStep:
    """A tool step waiting for a person, kept outside any request.

    `messages` runs up to and including the assistant turn that made the `calls`; `approvals`
    maps each approval id to its tool call id; `step` is the model call that made them."""

    messages: list[Message]
    calls: list[ToolCall]
    approvals: dict[str, str]
    step: int
    request_id: str = ""  # the request that asked (its UI message id derives from it); not saved


@dataclass(slots=True)
class PendingAnswer:
    """A saved step and the chat's UI message it belongs to (a server continues that message)."""

    step: PendingStep
    chat_id: str
    message_id: str


@dataclass(slots=True)
class DeferredApproval:
    """How a request handles approval when nobody can answer while it runs.

    `save(step)` is awaited with the `PendingStep` when calls need approval; the request then
    ends (`done`, finish reason `tool_approval`) after their `tool_approval_request` events.
    With `resume` and `decisions` (tool call id -> `Decision`), the request starts by finishing
    that step: approved calls run, the others are denied, and the tool loop goes on."""

    save: Callable[[PendingStep], Awaitable[None]]
    resume: PendingStep | None = None
    decisions: dict[str, Decision] = field(default_factory=dict)


async def _emit_results(ctx: RequestContext, results: list[ToolResult]) -> None:
    for r in results:
        meta = {"is_error": True} if r.is_error else {}
        await ctx.emit(r.to_event_value(), EventType.TOOL_RESULT, EventLevel.INFO, step=ctx.step, **meta)


async def run_tool_step(
    ctx: RequestContext,
    tools: Sequence[Tool[..., Any]],
    calls: list[ToolCall],
    timeout: float | None,
    deferred: DeferredApproval | None,
    messages: list[Message],
) -> list[ToolResult] | None:
    """Run one step of the tool loop and emit its `tool_result` events; None when the step was
    deferred (`messages`, ending with the calls' assistant turn, went to `deferred.save`)."""
    if deferred is not None:
        by_name = {t.name: t for t in tools}
        asking = [c for c in calls if (t := by_name.get(c.name)) is not None and t.needs_approval(c)]
        if asking:
            approvals: dict[str, str] = {}
            for c in asking:
                approval_id = new_approval_id()
                approvals[approval_id] = c.id
                value: ToolApprovalRequestValue = {
                    "approval_id": approval_id,
                    "tool_call_id": c.id,
                    "name": c.name,
                    "arguments": c.arguments,
                }
                await ctx.emit(value, EventType.TOOL_APPROVAL_REQUEST, EventLevel.INFO, step=ctx.step)
            await deferred.save(PendingStep(messages, calls, approvals, ctx.step, ctx.request_id))
            return None
    results = await execute_with_approval(ctx, tools, calls, timeout)
    await _emit_results(ctx, results)
    return results


async def resume_tool_step(
    ctx: RequestContext, tools: Sequence[Tool[..., Any]], deferred: DeferredApproval
) -> list[Message]:
    """Finish a saved step with the person's decisions; the conversation to continue from."""
    step = deferred.resume
    assert step is not None
    ctx.step = step.step
    asked = set(step.approvals.values())
    tool_list = list(tools)

    async def one(call: ToolCall) -> ToolResult:
        if call.id in asked:
            decision = deferred.decisions.get(call.id) or Decision(False, "nobody answered")
            if not decision.approved:
                return denied_result(call, decision.reason)
        return (await execute_tool_calls(tool_list, [call]))[0]

    results = list(await asyncio.gather(*(one(c) for c in step.calls)))
    await _emit_results(ctx, results)
    return [*step.messages, Message.tool(results)]
