"""A pending tool approval under `lmstream serve --redis` outlives the node that asked: node A is
SIGKILLed after the approval request, node B takes the answer and finishes the tool loop."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstream.approval import PendingAnswer, PendingStep
from lmstream.prompt import Message
from lmstream.redis.approvals import RedisApprovalStore, step_from_json, step_to_json
from lmstream.types import Attachment, ThinkingBlock, ToolCall, ToolResult
from tests.serve_helpers import _free_port
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_cli import env, serve_cmd

pytestmark = pytest.mark.usefixtures("mcp_sdk")

MCP_SERVER = f"stdio:{sys.executable} {Path(__file__).with_name('mcp_server.py')} stdio"


def start_node(redis_url: str, wire: WireServer) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    args = ("--model", "openai-compatible/m", "--base-url", f"{wire.base_url}/v1", "--redis", redis_url)
    cmd = serve_cmd("--port", str(port), *args, "--mcp", MCP_SERVER, "--approve-tools", "add")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "lmstream serve did not come up"
        time.sleep(0.1)


def stop_node(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def chunks_of(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]


def test_approval_reaches_another_node_after_the_first_was_sigkilled(redis_server):
    with WireServer() as wire:
        call = (fx.ToolCall("add", '{"a": 2, "b": 40}', id="call_add"),)
        wire.enqueue(Script(chunks=fx.openai_chat_tool_calls(call)), Script(chunks=fx.openai_chat_text(("42!",))))
        a, url_a = start_node(redis_server.url, wire)
        b, url_b = start_node(redis_server.url, wire)
        try:
            user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "2+40?"}]}
            with httpx.Client(timeout=30) as c:
                with c.stream("POST", f"{url_a}/api/chat", json={"id": "chat-r", "messages": [user]}) as r:
                    first = chunks_of(r)
                a.send_signal(signal.SIGKILL)  # the node that asked dies with nothing saved in its memory
                a.wait(10)
                ask = next(x for x in first if x["type"] == "tool-approval-request")
                assert first[-1] == {"type": "finish", "finishReason": "tool-calls"}
                part = {
                    "type": "tool-add",
                    "toolCallId": ask["toolCallId"],
                    "state": "approval-responded",
                    "input": {"a": 2, "b": 40},
                    "approval": {"id": ask["approvalId"], "approved": True},
                }
                assistant = {"id": first[0]["messageId"], "role": "assistant", "parts": [{"type": "step-start"}, part]}
                body = {"id": "chat-r", "messages": [user, assistant]}
                with c.stream("POST", f"{url_b}/api/chat", json=body) as r:
                    assert r.status_code == 200
                    second = chunks_of(r)
                again = c.post(f"{url_b}/api/chat", json=body)
        finally:
            stop_node(a)
            stop_node(b)
        model_saw = wire.requests[1].json["messages"]
    assert second[0] == {"type": "start", "messageId": first[0]["messageId"]}
    out = next(x for x in second if x["type"] == "tool-output-available")
    assert out["toolCallId"] == "call_add" and out["output"] == {"result": 42}
    assert "".join(x["delta"] for x in second if x["type"] == "text-delta") == "42!"
    assert second[-1]["type"] == "finish"
    assert [m["role"] for m in model_saw] == ["user", "assistant", "tool"]  # the saved conversation
    assert again.status_code == 409 and "already answered" in again.json()["error"]["message"]


def test_step_codec_round_trips_every_content_kind():
    step = PendingStep(
        [
            Message("user", ["hi", Attachment(b"\x89PNG\r\n\x1a\n" + bytes(8), "image/png", "a.png")]),
            Message("assistant", [ThinkingBlock("hm", "sig"), "ok", ToolCall("c1", "add", {"a": 1}, b"\x00sig")]),
            Message.tool([ToolResult("c0", "x", "no", True, denied=True)]),
        ],
        [ToolCall("c1", "add", {"a": 1})],
        {"apr_1": "c1"},
        3,
    )
    back = step_from_json(step_to_json(PendingAnswer(step, "chat", "msg")))
    assert back.step == step and (back.chat_id, back.message_id) == ("chat", "msg")
    assert back.step.messages[1].contents[2].signature == b"\x00sig"
    assert back.step.messages[2].contents[0].denied is True


async def test_redis_store_takes_once_and_tells_expired_from_unknown(r):
    store = RedisApprovalStore(r, prefix="t")
    step = PendingStep([Message("user", ["x"])], [ToolCall("c1", "add", {})], {"apr_a": "c1", "apr_b": "c1"}, 1)
    await store.save(PendingAnswer(step, "chat", "msg"), ttl=60)
    taken = await store.take(["apr_a"])
    assert taken.step.approvals == step.approvals
    from lmstream.approval import ApprovalError

    for aid, status in (("apr_a", 409), ("apr_b", 409), ("apr_never", 409)):
        with pytest.raises(ApprovalError) as err:
            await store.take([aid])
        assert err.value.status_code == status
    await store.save(PendingAnswer(PendingStep([], [], {"apr_c": "c"}, 1), "chat", "msg"), ttl=0.05)
    await asyncio.sleep(0.1)
    with pytest.raises(ApprovalError) as err:
        await store.take(["apr_c"])
    assert err.value.status_code == 410


async def test_a_queued_answer_saved_by_the_worker_is_continued_by_a_web_node(r, redis_server):
    """`lmstream worker`'s chat handler saves the step in Redis; a node (another process in real
    life, another loop here) takes the answer and streams the rest into the same message."""
    import redis.asyncio as aioredis

    from lmstream import CallbackEventHandler, EventEmitter, LMRequestProcessor, PromptBuilder, tool
    from lmstream.engine.deltas import FinishDelta, ToolCallDelta
    from lmstream.redis.cli import chat_jobs
    from lmstream.testing import ScriptedLMInvoker
    from tests.serve_helpers import ServedApp

    ran: list[str] = []

    @tool(requires_approval=True)
    def send_mail(to: str) -> str:
        """Send a mail."""
        ran.append(to)
        return f"sent to {to}"

    inv = ScriptedLMInvoker([[ToolCallDelta(0, "c1", "send_mail", '{"to": "bob"}'), FinishDelta("tool_calls")], ["ok"]])
    proc = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[send_mail])
    events: list[Any] = []
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "mail bob"}]}
    handle = chat_jobs(proc, RedisApprovalStore(r))
    await handle({"chat": {"id": "chat-q", "messages": [user]}}, EventEmitter([CallbackEventHandler(events.append)]))
    ask = next(e for e in events if e.type == "tool_approval_request")
    assert events[-1].metadata["finish_reason"] == "tool_approval" and ran == []
    message_id = f"msg_{ask.metadata['request_id']}"  # what the Redis reader showed the client
    part = {
        "type": "tool-send_mail",
        "toolCallId": "c1",
        "state": "approval-responded",
        "input": {"to": "bob"},
        "approval": {"id": ask.value["approval_id"], "approved": True},
    }
    body = {"id": "chat-q", "messages": [user, {"id": message_id, "role": "assistant", "parts": [part]}]}
    node_redis = aioredis.Redis.from_url(redis_server.url)  # the node's own client, on the node's loop
    with ServedApp(proc, approvals=RedisApprovalStore(node_redis)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=body) as resp:
            assert resp.status_code == 200
            chunks = chunks_of(resp)
        assert app.loop is not None
        asyncio.run_coroutine_threadsafe(node_redis.aclose(), app.loop).result(5)
    assert chunks[0] == {"type": "start", "messageId": message_id}
    assert {"type": "tool-output-available", "toolCallId": "c1", "output": "sent to bob"} in chunks
    assert ran == ["bob"] and chunks[-1]["type"] == "finish"
