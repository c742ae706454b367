"""Tool approval over HTTP: the real `ai` client's addToolApprovalResponse against /api/chat, and
POST /v1/stream/{request_id}/approve. The model is a wire replay of Chat Completions."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from lmstream import tool
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_ai_client import node

ran: list[str] = []


@tool(requires_approval=True)
def send_mail(to: str) -> dict[str, Any]:
    """Send a mail."""
    ran.append(f"mail {to}")
    return {"sent": True, "to": to}


@tool(requires_approval=True)
def pay(amount: int) -> str:
    """Pay an amount."""
    ran.append(f"pay {amount}")
    return f"paid {amount}"


CALLS = (
    fx.ToolCall("send_mail", '{"to": "bob"}', id="call_mail"),
    fx.ToolCall("pay", '{"amount": 500}', id="call_pay"),
)


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


def tool_parts(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["toolCallId"]: p for p in message["parts"] if p["type"].startswith("tool-")}


def test_ai_client_approves_one_call_and_denies_the_other_in_one_step(wire, ai_js_dir):
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls(CALLS)), Script(chunks=fx.openai_chat_text(("Mailed Bob.",))))
    with ServedApp(wire_processor(wire, tools=[send_mail, pay])) as app:
        out = node(ai_js_dir, app.url, "approve", "Mail Bob and pay 500", json.dumps({"send_mail": True, "pay": False}))
        replay = out["runs"][1]["request"]
        with httpx.Client(timeout=10) as c:  # the same answers again: that step is gone
            again = c.post(f"{app.url}/api/chat", json=replay)
    first, second = out["runs"]
    assert first["invalid"] == [] and second["invalid"] == []
    # 1st response: the calls, one approval request each, then the message ends
    asks = [c for c in first["chunks"] if c["type"] == "tool-approval-request"]
    assert {a["toolCallId"] for a in asks} == {"call_mail", "call_pay"}
    assert all(a["approvalId"].startswith("apr_") for a in asks)
    assert first["chunks"][-1] == {"type": "finish", "finishReason": "tool-calls"}
    assert out["requested"] == 2
    asked = tool_parts(out["asked"]["messages"][-1])
    assert {p["state"] for p in asked.values()} == {"approval-requested"}
    assert asked["call_mail"]["input"] == {"to": "bob"}
    # 2nd request: the client sent the parts as approval-responded; the server ran one, denied one
    sent = tool_parts(replay["messages"][-1])
    assert {p["state"] for p in sent.values()} == {"approval-responded"}
    kinds = [c["type"] for c in second["chunks"]]
    assert kinds[0] == "start" and second["chunks"][0]["messageId"] == first["chunks"][0]["messageId"]
    assert kinds.index("tool-output-available") < kinds.index("start-step") < kinds.index("text-delta")
    assert {"type": "tool-output-denied", "toolCallId": "call_pay"} in second["chunks"]
    assert ran == ["mail bob"]
    # the client continued the same assistant message: one answer with both outcomes and the text
    messages = out["answered"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and out["answered"]["status"] == "ready"
    parts = tool_parts(messages[-1])
    assert parts["call_mail"]["state"] == "output-available" and parts["call_mail"]["output"] == {
        "sent": True,
        "to": "bob",
    }
    assert parts["call_pay"]["state"] == "output-denied"
    assert "Mailed Bob." in "".join(p.get("text", "") for p in messages[-1]["parts"] if p["type"] == "text")
    # the model heard both outcomes, in the same tool step
    tool_msgs = [m for m in wire.requests[1].json["messages"] if m["role"] == "tool"]
    by_id = {m["tool_call_id"]: m["content"] for m in tool_msgs}
    assert '"sent"' in by_id["call_mail"] and "denied" in by_id["call_pay"] and "said no" in by_id["call_pay"]
    assert again.status_code == 409 and "already answered" in again.json()["error"]["message"]
    assert len(wire.requests) == 2  # the replay reached no model


def _approval_body(approval_id: str, call_id: str = "call_mail", message_id: str = "msg_x") -> dict[str, Any]:
    part = {
        "type": "tool-send_mail",
        "toolCallId": call_id,
        "state": "approval-responded",
        "input": {"to": "mallory"},
        "approval": {"id": approval_id, "approved": True},
    }
    return {
        "id": "chat1",
        "trigger": "submit-message",
        "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]},
            {"id": message_id, "role": "assistant", "parts": [part]},
        ],
    }


def _ask(c: httpx.Client, url: str) -> tuple[str, str]:
    """One /api/chat turn that stops at an approval request: (approval id, message id)."""
    with c.stream("POST", f"{url}/api/chat", json={"id": "chat1", "messages": [
        {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "mail bob"}]}
    ]}) as r:  # fmt: skip
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    ask = next(c for c in chunks if c["type"] == "tool-approval-request")
    return ask["approvalId"], chunks[0]["messageId"]


def test_unknown_foreign_and_expired_approvals_get_409_and_410(wire):
    one = (fx.ToolCall("send_mail", '{"to": "bob"}', id="call_mail"),)
    wire.enqueue(*(Script(chunks=fx.openai_chat_tool_calls(one)) for _ in range(3)))
    with ServedApp(wire_processor(wire, tools=[send_mail]), approval_ttl=0.5) as app, httpx.Client(timeout=10) as c:
        unknown = c.post(f"{app.url}/api/chat", json=_approval_body("apr_never_asked"))
        aid, mid = _ask(c, app.url)
        wrong_call = c.post(f"{app.url}/api/chat", json=_approval_body(aid, call_id="call_other", message_id=mid))
        aid2, mid2 = _ask(c, app.url)
        time.sleep(0.8)
        expired = c.post(f"{app.url}/api/chat", json=_approval_body(aid2, message_id=mid2))
        bad = c.post(f"{app.url}/api/chat", json={**_approval_body(aid2), "messages": [
            {"id": "m", "role": "assistant", "parts": [{"type": "tool-x", "state": "approval-responded"}]}
        ]})  # fmt: skip
    assert unknown.status_code == 409 and "apr_never_asked" in unknown.json()["error"]["message"]
    assert wrong_call.status_code == 409 and "another tool call" in wrong_call.json()["error"]["message"]
    assert expired.status_code == 410 and "expired" in expired.json()["error"]["message"]
    assert bad.status_code == 400 and "approval.id" in bad.json()["error"]["message"]
    assert ran == []  # nothing ran, whatever the client claimed the input was


def test_v1_stream_waits_for_post_approve_then_runs_the_call(wire):
    one = (fx.ToolCall("send_mail", '{"to": "bob"}', id="call_mail"),)
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls(one)), Script(chunks=fx.openai_chat_text(("ok",))))
    events: list[dict[str, Any]] = []
    answers: list[httpx.Response] = []
    with ServedApp(wire_processor(wire, tools=[send_mail])) as app, httpx.Client(timeout=10) as c:

        def approve(request_id: str, approval_id: str) -> None:
            with httpx.Client(timeout=10) as c2:
                url = f"{app.url}/v1/stream/{request_id}/approve"
                answers.append(c2.post(url, json={"approval_id": approval_id, "approved": False, "reason": "x"}))
                answers.append(c2.post(url, json={"approval_id": approval_id, "approved": True}))
                answers.append(
                    c2.post(f"{app.url}/v1/stream/req_other/approve", json={"approval_id": "a", "approved": 1})
                )

        with c.stream("POST", f"{app.url}/v1/stream", json={"prompt": "mail bob"}) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                ev = json.loads(line[6:])
                events.append(ev)
                if ev["type"] == "tool_approval_request":
                    t = threading.Thread(
                        target=approve, args=(ev["metadata"]["request_id"], ev["value"]["approval_id"])
                    )
                    t.start()
                    t.join(10)
    types = [e["type"] for e in events]
    assert types.index("tool_approval_request") < types.index("tool_result") and types[-1] == "done"
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["value"]["denied"] is True and ran == []
    assert [a.status_code for a in answers] == [200, 409, 400]


def test_mapping_of_approval_progress_and_denial_chunks():
    from lmstream.protocols.ui_stream import UIStreamMapper

    m = UIStreamMapper("msg_1")
    meta = {"step": 1, "request_id": "r"}
    call = {"id": "c1", "name": "send_mail", "arguments": {"to": "bob"}}
    m.feed("tool_call", call, {**meta, "block_id": "b1"})
    ask = {"approval_id": "apr_1", "tool_call_id": "c1", "name": "send_mail", "arguments": {"to": "bob"}}
    assert m.feed("tool_approval_request", ask, meta) == [
        {"type": "tool-approval-request", "approvalId": "apr_1", "toolCallId": "c1"}
    ]
    done = m.feed("done", "", {**meta, "finish_reason": "tool_approval", "usage": {}})
    assert done[-1] == {"type": "finish", "finishReason": "tool-calls"}

    cont = UIStreamMapper("msg_1", step=1, announced=("c1",))  # the next request continues the message
    progress = {"tool_call_id": "c1", "name": "send_mail", "progress": 1, "total": 2, "message": "half"}
    assert cont.feed("tool_progress", progress, meta) == [{"type": "data-tool-progress", "id": "c1", "data": progress}]
    denied = {"id": "c1", "name": "send_mail", "output": "The user denied this tool call", "denied": True}
    assert cont.feed("tool_result", denied, meta) == [{"type": "tool-output-denied", "toolCallId": "c1"}]
    nxt = cont.feed("response", "ok", {"step": 2, "block_id": "b2"})
    assert [c["type"] for c in nxt] == ["finish-step", "start-step", "text-start", "text-delta"]
