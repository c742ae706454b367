"""The app over real uvicorn on loopback, upstream = wire replay servers through `openai-compatible/`.

What a server must survive: clients that leave (before the first token, mid-stream), stops,
malformed and oversized bodies, missing keys, too many streams, a provider failing mid-stream.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.serve_helpers import ServedApp, parse_ui_stream, sse_data, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

WORDS = tuple(f" w{i}" for i in range(40))


def user(text: str, id_: str = "u1") -> dict[str, Any]:
    return {"id": id_, "role": "user", "parts": [{"type": "text", "text": text}]}


def chat_body(*messages: dict[str, Any], chat_id: str = "chat1", **extra: Any) -> dict[str, Any]:
    return {"id": chat_id, "trigger": "submit-message", "messages": list(messages) or [user("Hi")], **extra}


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """Current weather for a city."""
    return {"city": city, "temp": 21, "unit": unit}


def get_time(timezone: str) -> str:
    """Local time in a timezone."""
    return "14:05"


# --------------------------------------------------------------------------- streams


def test_chat_streams_reasoning_text_usage_with_the_protocol_headers(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello", ",", " world"), reasoning_deltas=("Let me", " think"))))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            assert r.status_code == 200
            assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert r.headers["x-accel-buffering"] == "no"
            assert r.headers["cache-control"] == "no-cache"
            assert r.headers["content-type"].startswith("text/event-stream")
            chunks = parse_ui_stream(r)
        assert app.idle()
    assert types(chunks) == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "text-end",
        "data-usage",
        "finish-step",
        "finish",
        "[DONE]",
    ]
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Hello, world"
    usage = next(c for c in chunks if c["type"] == "data-usage")["data"]
    assert usage["input_tokens"] == 12 and usage["output_tokens"] == 5 and usage["time_to_first_token"] > 0
    assert chunks[-2] == {"type": "finish", "finishReason": "stop"}
    assert wire.requests[0].json["messages"] == [{"role": "user", "content": "Hi"}]


def test_chat_history_from_ui_messages_reaches_the_provider(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("Sure",))))
    earlier = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "hmm"},
            {"type": "text", "text": "Hello!"},
        ],
    }
    proc = wire_processor(wire, system_template="Be brief.")
    with ServedApp(proc) as app, httpx.Client(timeout=10) as c:
        body = chat_body(user("Hi", "u1"), earlier, user("And now?", "u2"), trigger="regenerate-message")
        with c.stream("POST", f"{app.url}/api/chat", json=body) as r:
            chunks = parse_ui_stream(r)
    assert chunks[-2]["type"] == "finish"
    sent = wire.requests[0].json["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1] == {"role": "user", "content": "Hi"}
    assert sent[2]["role"] == "assistant" and sent[2]["content"] == "Hello!"
    assert sent[-1] == {"role": "user", "content": "And now?"}


def test_tool_loop_two_steps_with_tool_values(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls()), Script(chunks=fx.openai_chat_text(("It is 21°C.",))))
    with ServedApp(wire_processor(wire, tools=[get_weather, get_time])) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(user("Weather in Paris?"))) as r:
            chunks = parse_ui_stream(r)
    t = types(chunks)
    assert t.count("start-step") == 2 and t.count("finish-step") == 2
    first_step = t[: t.index("finish-step")]
    for call in fx.DEFAULT_TOOL_CALLS:
        mine = [c for c in chunks if c.get("toolCallId") == call.id]
        kinds = [c["type"] for c in mine]
        assert kinds[0] == "tool-input-start" and mine[0]["toolName"] == call.name
        deltas = [c["inputTextDelta"] for c in mine if c["type"] == "tool-input-delta"]
        assert deltas and "".join(deltas) == call.arguments  # streamed as the model wrote them
        available = next(c for c in mine if c["type"] == "tool-input-available")
        assert available["input"] == call.args_obj
        assert "tool-output-available" in kinds
    outputs = {c["toolCallId"]: c["output"] for c in chunks if c["type"] == "tool-output-available"}
    assert outputs == {"call_wire_0": {"city": "Paris", "temp": 21, "unit": "celsius"}, "call_wire_1": "14:05"}
    assert first_step.count("tool-output-available") == 2  # results belong to the step that asked
    assert chunks[-2] == {"type": "finish", "finishReason": "stop"}
    second = wire.requests[1].json["messages"]
    assert [m["role"] for m in second][-3:] == ["assistant", "tool", "tool"]


def test_v1_stream_sends_lmstream_events_as_sse(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("A", "B"))))
    with ServedApp(wire_processor(wire, user_template="Q: {q}")) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/v1/stream", json={"prompt": "x", "hyperparameters": {"max_tokens": 5}}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = list(r.iter_lines())
    events, cur = [], {}
    for line in lines:
        if not line:
            events.append(cur)
            cur = {}
        else:
            k, _, v = line.partition(": ")
            cur[k] = v
    data = [json.loads(e["data"]) for e in events]
    assert [d["type"] for d in data] == ["response", "response", "done"]
    assert all(e["id"] == d["id"] and e["event"] == d["type"] for e, d in zip(events, data, strict=True))
    assert data[0]["value"] == "A" and data[0]["level"] == "INFO" and data[0]["metadata"]["request_id"]
    assert wire.requests[0].json["messages"] == [{"role": "user", "content": "Q: x"}]
    assert wire.requests[0].json["max_tokens"] == 5


def test_heartbeat_comments_while_the_model_is_silent(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("late",)), delay_first=0.8))
    with ServedApp(wire_processor(wire), heartbeat=0.2) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            lines = list(r.iter_lines())
    first_text = next(i for i, line in enumerate(lines) if "text-delta" in line)
    assert sum(1 for line in lines[:first_text] if line.startswith(":")) >= 2
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"


# --------------------------------------------------------------------------- leaving, stopping


def _open(c: httpx.Client, url: str, body: dict[str, Any]) -> Any:
    cm = c.stream("POST", url, json=body)
    return cm, cm.__enter__()


def test_client_leaves_before_the_first_token_upstream_closed_within_1s(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_first=10))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        cm, r = _open(c, f"{app.url}/api/chat", chat_body())
        assert r.status_code == 200
        assert wire.wait_for_sync(lambda s: len(s.requests) == 1, 5)
        t0 = time.monotonic()
        cm.__exit__(None, None, None)  # the browser leaves
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open after 1 s"
        assert time.monotonic() - t0 < 1.0
        assert app.idle(), "a request is still running"
        assert c.get(f"{app.url}/api/chat/chat1/stream").status_code == 204


def test_client_leaves_mid_stream_upstream_closed_within_1s(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.1))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        cm, r = _open(c, f"{app.url}/api/chat", chat_body())
        seen = 0
        for payload in sse_data(r.iter_lines()):
            seen += '"text-delta"' in payload
            if seen == 3:
                break
        cm.__exit__(None, None, None)
        t0 = time.monotonic()
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open after 1 s"
        assert time.monotonic() - t0 < 1.0
        assert wire.requests[0].outcome == "client-closed"
        assert app.idle()


def test_stop_endpoint_cancels_and_the_stream_ends_with_abort(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.1))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        assert c.post(f"{app.url}/api/chat/chat9/stop", json={}).json() == {"stopped": False}
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="chat9")) as r:
            chunks: list[dict[str, Any]] = []
            for payload in sse_data(r.iter_lines()):
                chunks.append({"type": "[DONE]"} if payload == "[DONE]" else json.loads(payload))
                if len(chunks) == 5:
                    with httpx.Client(timeout=5) as other:
                        assert other.post(f"{app.url}/api/chat/chat9/stop", json={}).json() == {"stopped": True}
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0)
        assert app.idle()
    assert types(chunks)[-3:] == ["finish-step", "abort", "[DONE]"] or types(chunks)[-4:-1] == [
        "text-end",
        "finish-step",
        "abort",
    ]
    assert "finish" not in types(chunks) and "error" not in types(chunks)


def test_resume_replays_the_running_answer_then_204(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("a", "b", "c", "d")), delay_between=0.15))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        assert c.get(f"{app.url}/api/chat/chat2/stream").status_code == 204
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="chat2")) as r:
            it = sse_data(r.iter_lines())
            first = json.loads(next(it))
            with httpx.Client(timeout=10) as other, other.stream("GET", f"{app.url}/api/chat/chat2/stream") as g:
                assert g.status_code == 200 and g.headers["x-vercel-ai-ui-message-stream"] == "v1"
                replay = parse_ui_stream(g)
            rest = [p for p in it]
        assert c.get(f"{app.url}/api/chat/chat2/stream").status_code == 204
    assert replay[0] == first  # full replay from the start, same messageId
    assert types(replay)[-2:] == ["finish", "[DONE]"]
    assert rest[-1] == "[DONE]"


def test_a_new_answer_for_the_same_chat_stops_the_running_one(wire):
    wire.enqueue(
        Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.1), Script(chunks=fx.openai_chat_text(("new",)))
    )
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="same")) as r:
            it = sse_data(r.iter_lines())
            next(it)
            with httpx.Client(timeout=10) as other:
                second = parse_ui_stream(other.post(f"{app.url}/api/chat", json=chat_body(chat_id="same")))
            first = [json.loads(p) if p != "[DONE]" else {"type": "[DONE]"} for p in it]
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0)
        assert app.idle()
    assert types(first)[-2:] == ["abort", "[DONE]"]
    assert types(second)[-2:] == ["finish", "[DONE]"]
