"""`lmstream serve --mcp ... --approve-tools ...` as a real subprocess: an MCP server's tool, approved
in the real `ai` client, runs and the model's next step streams into the same message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_ai_client import node
from .test_server_cli import env, serve_cmd, serving

pytestmark = pytest.mark.usefixtures("mcp_sdk")

MCP_SERVER = f"stdio:{sys.executable} {Path(__file__).with_name('mcp_server.py')} stdio"


def test_serve_mcp_tool_loop_with_approval_through_the_ai_client(ai_js_dir):
    with WireServer() as wire:
        call = (fx.ToolCall("add", '{"a": 2, "b": 40}', id="call_add"),)
        wire.enqueue(Script(chunks=fx.openai_chat_tool_calls(call)), Script(chunks=fx.openai_chat_text(("It is 42.",))))
        model = ("--model", "openai-compatible/m", "--base-url", f"{wire.base_url}/v1")
        with serving(*model, "--mcp", MCP_SERVER, "--approve-tools", "add") as url:
            out = node(ai_js_dir, url, "approve", "2+40?", json.dumps({"add": True}))
        sent_tools = {t["function"]["name"] for t in wire.requests[0].json["tools"]}
        second = wire.requests[1].json["messages"]
    assert {"add", "count", "grow"} <= sent_tools  # the MCP server's listing reached the model
    first, cont = out["runs"]
    assert any(c["type"] == "tool-approval-request" for c in first["chunks"])
    assert cont["invalid"] == [] and out["answered"]["status"] == "ready"
    parts = [p for p in out["answered"]["messages"][-1]["parts"] if p.get("toolCallId") == "call_add"]
    assert parts[0]["state"] == "output-available" and parts[0]["output"] == {"result": 42}
    tool_msg = next(m for m in second if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_add" and "42" in tool_msg["content"]
    text = "".join(p.get("text", "") for p in out["answered"]["messages"][-1]["parts"] if p["type"] == "text")
    assert text == "It is 42."


def test_approve_tools_naming_no_offered_tool_fails_at_start_up():
    args = ("--model", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1")
    cmd = serve_cmd("--port", "0", *args, "--mcp", MCP_SERVER, "--approve-tools", "add,nope")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode != 0 and "nope" in proc.stderr and "offered" in proc.stderr


def test_bad_mcp_spec_is_one_clear_error():
    args = ("--model", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1", "--mcp", "ftp://x")
    proc = subprocess.run(serve_cmd(*args), capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 2 and "stdio:COMMAND" in proc.stderr
