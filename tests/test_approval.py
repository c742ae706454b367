"""Tool approval in the library: the stream asks, the running request waits, approve/deny/timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmstream import EventEmitter, EventType, LMRequestProcessor, PromptBuilder, ToolCall, tool
from lmstream.approval import ApprovalError, answer
from lmstream.engine.deltas import FinishDelta, ToolCallDelta
from lmstream.testing import ScriptedLMInvoker

WAIT = 10


def two_step(*calls: tuple[str, str, str]) -> ScriptedLMInvoker:
    first = [ToolCallDelta(i, cid, name, args) for i, (cid, name, args) in enumerate(calls)]
    return ScriptedLMInvoker([[*first, FinishDelta("tool_calls")], ["done."]])


def make(inv: ScriptedLMInvoker, tools: list[Any]) -> LMRequestProcessor[Any]:
    return LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=tools)


ran: list[str] = []


@tool(requires_approval=True)
def send_mail(to: str) -> str:
    """Send a mail."""
    ran.append(to)
    return f"sent to {to}"


@tool(requires_approval=lambda call: call.arguments.get("amount", 0) > 100)
def pay(amount: int) -> str:
    """Pay an amount."""
    ran.append(f"pay {amount}")
    return f"paid {amount}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


async def run_answering(lmrp: LMRequestProcessor[Any], answers: dict[str, tuple[bool, str | None]], **kw: Any):
    """Stream, answering each approval request by tool name; returns the events and the output."""
    events = []
    async with lmrp.stream(q="go", **kw) as stream:
        async for e in stream:
            events.append(e)
            if e.type == EventType.TOOL_APPROVAL_REQUEST:
                ok, reason = answers[e.value["name"]]
                assert ran == [] or e.value["name"] not in ran  # the tool has not run yet
                if ok:
                    stream.approve(e.value["approval_id"])
                else:
                    stream.deny(e.value["approval_id"], reason)
        out = await stream.result()
    return events, out


async def test_approved_call_runs_after_the_request_then_the_loop_goes_on():
    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))
    events, out = await asyncio.wait_for(run_answering(make(inv, [send_mail]), {"send_mail": (True, None)}), WAIT)
    types = [e.type for e in events]
    assert types.index("tool_call") < types.index("tool_approval_request") < types.index("tool_result")
    req = next(e for e in events if e.type == "tool_approval_request")
    assert req.value["tool_call_id"] == "c1" and req.value["name"] == "send_mail"
    assert req.value["arguments"] == {"to": "bob"} and req.value["approval_id"].startswith("apr_")
    assert req.metadata["step"] == 1
    result = next(e for e in events if e.type == "tool_result")
    assert result.value == {"id": "c1", "name": "send_mail", "output": "sent to bob"}
    assert ran == ["bob"] and out.text == "done."
    assert "sent to bob" in str(inv.calls[1][0][-1].tool_results[0].output)


async def test_denied_call_never_runs_and_the_model_hears_why():
    inv = two_step(("c1", "send_mail", '{"to": "eve"}'))
    events, out = await asyncio.wait_for(
        run_answering(make(inv, [send_mail]), {"send_mail": (False, "not to eve")}), WAIT
    )
    result = next(e for e in events if e.type == "tool_result")
    assert result.value["denied"] is True and "not to eve" in result.value["output"]
    assert ran == []
    sent = inv.calls[1][0][-1].tool_results[0]
    assert "denied" in sent.output and "not to eve" in sent.output
    assert out.text == "done."


async def test_per_call_policy_and_one_approved_one_denied_in_one_step():
    inv = two_step(
        ("c1", "pay", '{"amount": 5}'),  # small: the policy lets it run unasked
        ("c2", "pay", '{"amount": 500}'),
        ("c3", "send_mail", '{"to": "bob"}'),
    )
    answers = {"pay": (False, "too much"), "send_mail": (True, None)}
    events, _ = await asyncio.wait_for(run_answering(make(inv, [pay, send_mail]), answers), WAIT)
    asked = [e.value["tool_call_id"] for e in events if e.type == "tool_approval_request"]
    assert asked == ["c2", "c3"]
    results = {e.value["id"]: e.value for e in events if e.type == "tool_result"}
    assert results["c1"]["output"] == "paid 5" and "denied" not in results["c1"]
    assert results["c2"]["denied"] is True
    assert results["c3"]["output"] == "sent to bob"
    assert sorted(ran) == ["bob", "pay 5"]


async def test_approval_timeout_denies_and_a_late_answer_is_410():
    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))
    async with make(inv, [send_mail]).stream(q="go", approval_timeout=0.2) as stream:
        events = [e async for e in stream]
    req = next(e for e in events if e.type == "tool_approval_request")
    result = next(e for e in events if e.type == "tool_result")
    assert result.value["denied"] is True and "approval_timeout" in result.value["output"]
    assert ran == []
    with pytest.raises(ApprovalError) as err:
        stream.approve(req.value["approval_id"])
    assert err.value.status_code == 410


async def test_unknown_used_and_foreign_ids_are_refused():
    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))
    seen: list[str] = []
    async with make(inv, [send_mail]).stream(q="go") as stream:
        async for e in stream:
            if e.type == EventType.TOOL_APPROVAL_REQUEST:
                aid = e.value["approval_id"]
                seen.append(aid)
                with pytest.raises(ApprovalError) as other:
                    answer(aid, True, request_id="req_someone_else")
                assert other.value.status_code == 409
                stream.approve(aid)
                with pytest.raises(ApprovalError) as twice:
                    stream.deny(aid)
                assert twice.value.status_code == 409
    with pytest.raises(ApprovalError) as unknown:
        stream.approve("apr_nope")
    assert unknown.value.status_code == 409
    assert ran == ["bob"] and seen


async def test_process_with_an_emitter_is_answered_from_a_handler_and_without_one_is_denied():
    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))

    async def on_event(e: Any) -> None:
        if e.type == EventType.TOOL_APPROVAL_REQUEST:
            answer(e.value["approval_id"], True)

    from lmstream import CallbackEventHandler

    emitter = EventEmitter([CallbackEventHandler(on_event)])
    out = await asyncio.wait_for(make(inv, [send_mail]).process(q="go", event_emitter=emitter), WAIT)
    assert out.text == "done." and ran == ["bob"]

    ran.clear()
    inv2 = two_step(("c1", "send_mail", '{"to": "bob"}'))
    await asyncio.wait_for(make(inv2, [send_mail]).process(q="go"), WAIT)
    assert ran == [] and inv2.calls[1][0][-1].tool_results[0].denied


async def test_cancelling_a_request_that_waits_for_approval_ends_it_and_kills_the_id():
    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))
    stream = make(inv, [send_mail]).stream(q="go")
    aid = None
    async with stream:
        async for e in stream:
            if e.type == EventType.TOOL_APPROVAL_REQUEST:
                aid = e.value["approval_id"]
                break
    assert aid is not None and ran == []
    with pytest.raises(ApprovalError) as err:
        stream.approve(aid)
    assert err.value.status_code == 410


def test_requires_approval_forms() -> None:
    call = ToolCall("c", "pay", {"amount": 1})
    assert send_mail.needs_approval(call) and not pay.needs_approval(call)

    def broken(c: ToolCall) -> bool:
        raise RuntimeError("policy bug")

    @tool(requires_approval=broken)
    def f() -> None:
        """x"""

    assert f.needs_approval(call)  # fails closed
    assert not tool(name="g")(lambda: None).needs_approval(call)


async def test_deferred_approval_ends_the_request_and_a_later_one_continues_the_step():
    from lmstream.approval import Decision, DeferredApproval, PendingStep

    inv = two_step(
        ("c1", "send_mail", '{"to": "bob"}'), ("c2", "pay", '{"amount": 500}'), ("c3", "pay", '{"amount": 1}')
    )
    saved: list[PendingStep] = []

    async def save(step: PendingStep) -> None:
        saved.append(step)

    lmrp = make(inv, [send_mail, pay])
    async with lmrp.stream(q="go", deferred_approval=DeferredApproval(save)) as stream:
        first = [e async for e in stream]
    assert [e.type for e in first][-1] == "done" and first[-1].metadata["finish_reason"] == "tool_approval"
    asks = {e.value["tool_call_id"]: e.value["approval_id"] for e in first if e.type == "tool_approval_request"}
    assert set(asks) == {"c1", "c2"} and "tool_result" not in [e.type for e in first]
    assert ran == [] and len(inv.calls) == 1
    (step,) = saved
    assert step.step == 1 and step.approvals == {v: k for k, v in asks.items()}
    assert [c.id for c in step.calls] == ["c1", "c2", "c3"] and step.messages[-1].role == "assistant"

    decisions = {"c1": Decision(True), "c2": Decision(False, "too much")}
    resume = DeferredApproval(save, resume=step, decisions=decisions)
    async with lmrp.stream(q="ignored", deferred_approval=resume) as stream:
        second = [e async for e in stream]
    results = {e.value["id"]: e.value for e in second if e.type == "tool_result"}
    assert results["c1"]["output"] == "sent to bob" and results["c2"]["denied"] is True
    assert results["c3"]["output"] == "paid 1"
    assert {e.metadata["step"] for e in second if e.type == "tool_result"} == {1}
    assert next(e for e in second if e.type == "response").metadata["step"] == 2
    assert sorted(ran) == ["bob", "pay 1"] and second[-1].metadata["finish_reason"] == "stop"
    sent = inv.calls[1][0]
    assert sent[-2].role == "assistant" and [r.id for r in sent[-1].tool_results] == ["c1", "c2", "c3"]


async def test_an_answer_from_another_thread_reaches_the_request():
    import threading

    inv = two_step(("c1", "send_mail", '{"to": "bob"}'))
    async with asyncio.timeout(WAIT), make(inv, [send_mail]).stream(q="go") as stream:
        async for e in stream:
            if e.type == EventType.TOOL_APPROVAL_REQUEST:
                t = threading.Thread(target=answer, args=(e.value["approval_id"], True))
                t.start()
                t.join(5)
        out = await stream.result()
    assert ran == ["bob"] and out.text == "done."
