"""lmstream events -> Vercel AI SDK UI message chunks (`lmstream.protocols.ui_stream`), one rule a test.

The real `ai` client validates the same chunks in tests/test_server_ai_client.py; here each
mapping rule is pinned on its own, with the protocol's ordering rules checked on every result.
"""

from __future__ import annotations

from typing import Any

from lmstream.protocols.ui_stream import UIStreamMapper, map_finish_reason

R = "req_1"


def meta(block: int | None, step: int | None = 1, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"request_id": R, **extra}
    if block is not None:
        m["block_id"] = f"{R}.{block}"
    if step is not None:
        m["step"] = step
    return m


def run(events: list[tuple[str, Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    m = UIStreamMapper("msg_test")
    out = [m.start()]
    for t, v, md in events:
        out.extend(m.feed(t, v, md))
    check_protocol(out)
    return out


def check_protocol(chunks: list[dict[str, Any]]) -> None:
    """What the `ai` client enforces: deltas/ends only inside their start; steps paired."""
    open_text: set[str] = set()
    open_reasoning: set[str] = set()
    tools: set[str] = set()
    in_step = False
    assert chunks[0]["type"] == "start"
    for c in chunks[1:]:
        t = c["type"]
        if t == "start-step":
            assert not in_step
            in_step = True
        elif t == "finish-step":
            assert in_step and not open_text and not open_reasoning
            in_step = False
        elif t == "text-start":
            open_text.add(c["id"])
        elif t == "text-delta":
            assert c["id"] in open_text
        elif t == "text-end":
            open_text.remove(c["id"])
        elif t == "reasoning-start":
            open_reasoning.add(c["id"])
        elif t == "reasoning-delta":
            assert c["id"] in open_reasoning
        elif t == "reasoning-end":
            open_reasoning.remove(c["id"])
        elif t == "tool-input-start":
            tools.add(c["toolCallId"])
        elif t in ("tool-input-delta", "tool-input-available", "tool-output-available", "tool-output-error"):
            assert c["toolCallId"] in tools
    terminal = [c["type"] for c in chunks if c["type"] in ("finish", "error", "abort")]
    assert len(terminal) <= 1 and (not terminal or chunks[-1]["type"] == terminal[0])


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]


def test_response_maps_to_text_parts_and_done_to_finish():
    out = run(
        [
            ("response", "Hel", meta(1)),
            ("response", "lo", meta(1)),
            ("done", "", {"request_id": R, "usage": {"input_tokens": 3, "output_tokens": 2}, "finish_reason": "stop"}),
        ]
    )
    assert types(out) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "data-usage",
        "finish-step",
        "finish",
    ]
    assert out[0]["messageId"] == "msg_test"
    assert [c["delta"] for c in out if c["type"] == "text-delta"] == ["Hel", "lo"]
    assert {c["id"] for c in out if c["type"].startswith("text-")} == {f"{R}.1"}
    assert out[-1] == {"type": "finish", "finishReason": "stop"}
    assert out[6]["data"] == {"input_tokens": 3, "output_tokens": 2}


def test_thinking_maps_to_reasoning_parts_before_the_text():
    out = run(
        [
            ("thinking_start", "", meta(1)),
            ("thinking", "Let me", meta(1)),
            ("thinking", " think", meta(1)),
            ("thinking_end", "", meta(1)),
            ("response", "42", meta(2)),
            ("done", "", {"request_id": R, "finish_reason": "stop"}),
        ]
    )
    assert types(out)[:6] == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
    ]
    assert [c["delta"] for c in out if c["type"] == "reasoning-delta"] == ["Let me", " think"]
    assert types(out)[6:8] == ["text-start", "text-delta"]


def test_streamed_tool_call_then_result_in_the_same_step_then_the_next_step():
    call = {"id": "call_1", "name": "get_weather"}
    out = run(
        [
            ("tool_call_start", call, meta(1)),
            ("tool_call_delta", '{"city":', meta(1)),
            ("tool_call_delta", '"Paris"}', meta(1)),
            ("tool_call", {**call, "arguments": {"city": "Paris"}}, meta(1)),
            ("tool_result", {**call, "output": {"temp_c": 21}}, meta(None)),
            ("response", "It is 21°C.", meta(2, step=2)),
            ("done", "", {"request_id": R, "finish_reason": "stop"}),
        ]
    )
    assert types(out) == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "data-usage",
        "finish-step",
        "finish",
    ]
    assert out[2] == {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_weather"}
    assert "".join(c["inputTextDelta"] for c in out if c["type"] == "tool-input-delta") == '{"city":"Paris"}'
    assert out[5]["input"] == {"city": "Paris"}
    assert out[6]["output"] == {"temp_c": 21}  # the tool's value, as the event carries it


def test_tool_result_with_step_mark_stays_in_its_step():
    call = {"id": "c", "name": "f"}
    out = run(
        [
            ("tool_call", {**call, "arguments": {}}, meta(1)),
            ("tool_result", {**call, "output": '{"looks": "like JSON"}'}, meta(None, step=1)),
            ("response", "ok", meta(2, step=2)),
        ]
    )
    assert types(out)[1:6] == [
        "start-step",
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
    ]
    assert out[4]["output"] == '{"looks": "like JSON"}'  # a tool's string stays a string


def test_tool_error_result_maps_to_tool_output_error():
    call = {"id": "c", "name": "f"}
    out = run(
        [
            ("tool_call", {**call, "arguments": {"x": 1}}, meta(1)),
            ("tool_result", {**call, "output": "Error: ValueError: bad"}, meta(None, is_error=True)),
        ]
    )
    assert out[-1] == {"type": "tool-output-error", "toolCallId": "c", "errorText": "Error: ValueError: bad"}


def test_events_without_step_marks_still_pair_steps_around_the_tool_loop():
    call = {"id": "c", "name": "f"}
    out = run(
        [
            ("tool_call", {**call, "arguments": {}}, meta(1, step=None)),
            ("tool_result", {**call, "output": "1"}, meta(None, step=None)),
            ("response", "done", meta(3, step=None)),
            ("done", "", {"request_id": R, "finish_reason": "stop"}),
        ]
    )
    assert types(out).count("start-step") == 2 and types(out).count("finish-step") == 2


def test_data_and_usage_become_data_parts_and_other_kinds_transient_data():
    out = run(
        [
            ("data", {"city": "Par"}, meta(1)),
            ("data", {"city": "Paris"}, meta(1)),
            ("usage", {"input_tokens": 1}, meta(None)),
            ("status", "retrying", meta(None)),
        ]
    )
    assert out[1] == {"type": "data-object", "id": f"{R}.1", "data": {"city": "Par"}}
    assert out[2]["id"] == out[1]["id"]  # same type and id: the client replaces the growing object
    assert out[3] == {"type": "data-usage", "id": "usage", "data": {"input_tokens": 1}}
    assert out[4] == {"type": "data-status", "data": "retrying", "transient": True}


def test_done_carries_usage_and_timings_and_maps_the_finish_reason():
    m = UIStreamMapper()
    m.feed("response", "x", meta(1))
    out = m.feed(
        "done",
        "",
        {
            "request_id": R,
            "usage": {"input_tokens": 5, "output_tokens": 7},
            "finish_reason": "length",
            "duration": 1.5,
            "time_to_first_token": 0.25,
        },
    )
    usage = next(c for c in out if c["type"] == "data-usage")
    assert usage["data"] == {"input_tokens": 5, "output_tokens": 7, "duration": 1.5, "time_to_first_token": 0.25}
    assert out[-1] == {"type": "finish", "finishReason": "length"}
    assert m.closed and m.feed("response", "late", meta(1)) == []


def test_finish_reasons():
    assert map_finish_reason("stop") == "stop"
    assert map_finish_reason("length") == "length"
    assert map_finish_reason("tool_calls") == "tool-calls"
    assert map_finish_reason("content_filter") == "content-filter"
    assert map_finish_reason("something_new") == "other"


def test_error_closes_open_parts_then_error_and_no_finish():
    out = run([("response", "Par", meta(1)), ("error", "upstream broke", {"request_id": R})])
    assert types(out)[-2:] == ["text-end", "error"]
    assert out[-1] == {"type": "error", "errorText": "upstream broke"}
    assert "finish" not in types(out)


def test_stop_closes_parts_and_steps_then_abort():
    m = UIStreamMapper()
    chunks = [m.start(), *m.feed("thinking", "hm", meta(1)), *m.stopped()]
    check_protocol(chunks)
    assert types(chunks)[-3:] == ["reasoning-end", "finish-step", "abort"]
    assert m.stopped() == []


def test_every_answer_gets_its_own_message_id():
    ids = {UIStreamMapper().message_id for _ in range(100)}
    assert len(ids) == 100


def test_import_lmstream_and_the_mapping_load_no_web_framework():
    import subprocess
    import sys

    code = (
        "import sys, lmstream, lmstream.server, lmstream.protocols.ui_stream; "
        "bad = [m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


async def test_request_stream_cancel_is_synchronous_and_ends_the_stream_quietly():
    """What the server's disconnect path relies on: `cancel()` needs no `await`, the provider's
    stream is closed, and the stream ends with the cancellation event instead of raising."""
    import asyncio

    from lmstream import LMRequestProcessor, PromptBuilder
    from lmstream.testing import ScriptedLMInvoker

    inv = ScriptedLMInvoker([f" t{i}" for i in range(100)], delay=0.01)
    stream = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv).stream(q="x")
    seen = []
    async with asyncio.timeout(5):
        async for ev in stream:
            seen.append(ev.type)
            if len(seen) == 3:
                stream.cancel()
    await stream.aclose()
    assert seen[:3] == ["response"] * 3 and seen[-1] == "error" and len(seen) < 10
    assert inv.open_streams == 0
