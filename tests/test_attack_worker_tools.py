"""`serve --queue --mcp ... --approve-tools` (issue 31, item 13): the worker takes the same
`--mcp`/`--approve-tools`, so a queued chat gets the tools and asks for approval, and the web
node runs the approved call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer, free_port
from tests.test_redis_server import Proc
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.usefixtures("mcp_sdk")

MCP_SERVER = f"stdio:{sys.executable} {Path(__file__).with_name('mcp_server.py')} stdio"


def chunks_of(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]


def test_a_queued_chat_gets_the_workers_mcp_tools_and_asks_for_approval(redis_server: RedisServer) -> None:
    with WireServer() as wire:
        call = (fx.ToolCall("add", '{"a": 2, "b": 40}', id="call_add"),)
        wire.enqueue(Script(chunks=fx.openai_chat_tool_calls(call)), Script(chunks=fx.openai_chat_text(("42!",))))
        model = ["--model", "openai-compatible/m", "--base-url", f"{wire.base_url}/v1"]
        tools = ["--mcp", MCP_SERVER, "--approve-tools", "add"]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        node = Proc(["serve", "--redis", redis_server.url, "--queue", "--port", str(port), *model, *tools],
                    url + "/healthz")  # fmt: skip
        worker = Proc(["worker", "--redis", redis_server.url, "--lease", "2", *model, *tools])
        try:
            user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "2+40?"}]}
            with httpx.Client(timeout=60) as c:
                with c.stream("POST", f"{url}/api/chat", json={"id": "chat-t", "messages": [user]}) as r:
                    first = chunks_of(r)
                asks = [x for x in first if x["type"] == "tool-approval-request"]
                assert asks, first  # the worker had the tool, and it needs a person's approval
                assert first[-1] == {"type": "finish", "finishReason": "tool-calls"}
                part = {
                    "type": "tool-add",
                    "toolCallId": asks[0]["toolCallId"],
                    "state": "approval-responded",
                    "input": {"a": 2, "b": 40},
                    "approval": {"id": asks[0]["approvalId"], "approved": True},
                }
                assistant = {"id": first[0]["messageId"], "role": "assistant", "parts": [part]}
                with c.stream("POST", f"{url}/api/chat", json={"id": "chat-t", "messages": [user, assistant]}) as r:
                    second = chunks_of(r)
        finally:
            worker.kill()
            node.kill()
    out = next(x for x in second if x["type"] == "tool-output-available")
    assert out["output"] == {"result": 42}
    assert "".join(x["delta"] for x in second if x["type"] == "text-delta") == "42!"
