"""MCP tools against a real MCP server (tests/mcp_server.py, the official SDK's MCPServer), as a
stdio subprocess and over streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmstream import EventType, LMRequestProcessor, PromptBuilder
from lmstream.engine.deltas import FinishDelta, ToolCallDelta
from lmstream.mcp import MCPTools, MCPToolset
from lmstream.testing import ScriptedLMInvoker

pytestmark = pytest.mark.usefixtures("mcp_sdk")

SERVER = str(Path(__file__).with_name("mcp_server.py"))
WAIT = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mark_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "mark.txt"


@pytest.fixture
def mark(mark_file: Path) -> Path:
    """Where the servers note what they saw; emptied for each test."""
    mark_file.write_text("")
    return mark_file


@pytest.fixture(scope="module")
def http_server(mark_file: Path) -> Iterator[str]:
    """One streamable-HTTP server for the module (starting one costs seconds on a busy machine)."""
    port = free_port()
    env = {**os.environ, "LMSTREAM_MCP_MARK": str(mark_file)}
    proc = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def stdio(mark: Path, **kw: Any) -> MCPTools:
    return MCPTools.stdio(sys.executable, [SERVER, "stdio"], env={"LMSTREAM_MCP_MARK": str(mark)}, **kw)


@pytest.fixture(params=["stdio", "http"])
async def server(request: pytest.FixtureRequest, mark: Path) -> AsyncIterator[Any]:
    """A factory: `server(**options)` opens MCPTools to this transport's server."""
    if request.param == "stdio":
        yield lambda **kw: stdio(mark, **kw)
    else:
        url = request.getfixturevalue("http_server")
        yield lambda **kw: MCPTools.http(url, headers={"Authorization": "Bearer not-echoed"}, **kw)


def one_call(name: str, args: dict[str, Any]) -> ScriptedLMInvoker:
    return ScriptedLMInvoker(
        [[ToolCallDelta(0, "c1", name, json.dumps(args)), FinishDelta("tool_calls")], ["the end."]]
    )


async def loop(tools: list[Any], inv: ScriptedLMInvoker) -> tuple[list[Any], Any]:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=tools)
    async with lmrp.stream(q="go") as stream:
        events = [e async for e in stream]
    return events, await stream.result()


def result_of(events: list[Any]) -> Any:
    return next(e for e in events if e.type == EventType.TOOL_RESULT)


async def test_listing_with_schemas_prefix_and_approval(server: Any) -> None:
    async with server(prefix="t_", requires_approval={"add"}) as tools:
        assert isinstance(tools, MCPToolset)
        by_name = {t.name: t for t in tools}
        assert {"t_add", "t_count", "t_fail", "t_hang", "t_grow"} <= set(by_name)
        add = by_name["t_add"]
        assert add.description == "Add two numbers."
        assert set(add.parameters["properties"]) == {"a", "b"} and add.parameters["type"] == "object"
        assert add.requires_approval is True and by_name["t_count"].requires_approval is False


async def test_tool_loop_call_with_progress_and_structured_result(server: Any) -> None:
    async with server() as tools:
        events, out = await asyncio.wait_for(loop(list(tools), one_call("count", {"n": 3})), WAIT)
        progress = [e.value for e in events if e.type == EventType.TOOL_PROGRESS]
        assert [p["progress"] for p in progress] == [1, 2, 3]
        assert progress[0] == {"tool_call_id": "c1", "name": "count", "progress": 1, "total": 3, "message": "step 1"}
        types = [e.type for e in events]
        assert types.index("tool_call") < types.index("tool_progress") < types.index("tool_result")
        assert "counted to 3" in json.dumps(result_of(events).value["output"])
        assert out.text == "the end."

        events, _ = await asyncio.wait_for(loop(list(tools), one_call("add", {"a": 2, "b": 40})), WAIT)
        assert "42" in json.dumps(result_of(events).value["output"])


async def test_error_result_goes_to_the_model_as_a_tool_error(server: Any) -> None:
    async with server() as tools:
        inv = one_call("fail", {"why": "no disk"})
        events, out = await asyncio.wait_for(loop(list(tools), inv), WAIT)
    res = result_of(events)
    assert res.metadata.get("is_error") is True and "cannot: no disk" in res.value["output"]
    sent = inv.calls[1][0][-1].tool_results[0]
    assert sent.is_error and "cannot: no disk" in sent.output and out.text == "the end."


async def test_hang_past_the_timeout_is_a_tool_error_and_the_server_hears_cancelled(server: Any, mark: Path) -> None:
    async with server(timeout=1.0) as tools:
        started = time.monotonic()
        events, out = await asyncio.wait_for(loop(list(tools), one_call("hang", {})), WAIT)
        assert time.monotonic() - started < 5
        res = result_of(events)
        assert res.metadata.get("is_error") and "did not answer" in res.value["output"]
        assert "not-echoed" not in json.dumps([e.to_dict() for e in events])  # the HTTP header never shows
        assert out.text == "the end."
        await _wait_for_mark(mark, "hang cancelled")


async def test_cancelling_the_request_sends_cancelled_to_the_server(server: Any, mark: Path) -> None:
    async with server() as tools:
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), one_call("hang", {}), tools=list(tools))
        async with lmrp.stream(q="go") as stream:
            async for e in stream:
                if e.type == EventType.TOOL_CALL:
                    break
            await _wait_for_mark(mark, "hang started")
        # leaving the block cancelled the request and with it the MCP call
        await _wait_for_mark(mark, "hang cancelled")


async def test_tool_list_change_refreshes_the_listing(server: Any) -> None:
    async with server() as tools:
        changed = asyncio.Event()
        tools.on_change(lambda ts: changed.set())
        assert "extra" not in {t.name for t in tools}
        grow = next(t for t in tools if t.name == "grow")
        await asyncio.wait_for(grow.run({}), WAIT)
        await asyncio.wait_for(changed.wait(), WAIT)
        extra = next(t for t in tools if t.name == "extra")
        out = await asyncio.wait_for(extra.run({}), WAIT)
        assert out.text == "extra!"


async def test_image_result_keeps_the_data_for_the_event_and_describes_it_to_the_model(server: Any) -> None:
    async with server() as tools:
        inv = one_call("picture", {})
        events, _ = await asyncio.wait_for(loop(list(tools), inv), WAIT)
    items = result_of(events).value["output"]
    image = next(i for i in items if i["type"] == "image")
    assert image["mime_type"] == "image/png" and image["data"].startswith("iVBOR")
    sent = inv.calls[1][0][-1].tool_results[0].output
    assert "[image image/png" in sent and "iVBOR" not in sent


async def test_full_tool_loop_on_a_wire_replay_model(mark: Path) -> None:
    """The OpenAI SDK against a server replaying Chat Completions: the model calls an MCP tool,
    the result goes back on the wire, the model answers."""
    from tests.wire.providers import PROVIDERS, invoker
    from tests.wire.server import Script, WireServer

    p = PROVIDERS["openai-chat"]
    async with stdio(mark) as tools, WireServer() as srv:
        srv.enqueue(Script(chunks=p.tools([("add", {"a": 20, "b": 22}, "call_1")])), Script(chunks=p.text(("42.",))))
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), invoker(p, srv), tools=tools)
        async with lmrp.stream(q="20+22?") as stream:
            events = [e async for e in stream]
        first, second = srv.requests[0].json, srv.requests[1].json
    assert (await stream.result()).text == "42."
    assert any(t["function"]["name"] == "add" for t in first["tools"])  # the MCP schema went to the model
    tool_msg = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_1" and "42" in tool_msg["content"]
    assert result_of(events).value["output"] == {"result": 42}


async def test_server_death_mid_call_is_a_tool_error_and_the_request_goes_on(mark: Path) -> None:
    async with stdio(mark, timeout=5.0) as tools:
        started = time.monotonic()
        events, out = await asyncio.wait_for(loop(list(tools), one_call("die", {})), WAIT)
        assert time.monotonic() - started < 6
        res = result_of(events)
        assert res.metadata.get("is_error") and "MCP" in res.value["output"]
        assert out.text == "the end."
        # the connection is gone: a later call errs at once instead of hanging
        add = next(t for t in tools if t.name == "add")
        with pytest.raises(Exception, match="MCP"):
            await asyncio.wait_for(add.run({"a": 1, "b": 2}), 6)


async def test_mcp_tools_need_approval_like_any_tool(mark: Path) -> None:
    async with stdio(mark, requires_approval=True) as tools:
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), one_call("add", {"a": 1, "b": 2}), tools=tools)
        async with lmrp.stream(q="go") as stream:
            events = []
            async for e in stream:
                events.append(e)
                if e.type == EventType.TOOL_APPROVAL_REQUEST:
                    stream.deny(e.value["approval_id"], "no")
    assert result_of(events).value["denied"] is True


async def test_a_missing_server_command_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception) as err:
        async with MCPTools.stdio(str(tmp_path / "no-such-server"), timeout=5.0):
            pass
    assert "no-such-server" in str(err.value) or "No such file" in str(err.value)


async def _wait_for_mark(mark: Path, text: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mark.exists() and text in mark.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server never noted {text!r}: {mark.read_text() if mark.exists() else ''}")
