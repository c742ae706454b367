"""The real Vercel AI SDK client (`ai`, pinned in tests/js/package-lock.json) against `/api/chat`.

Node runs DefaultChatTransport + readUIMessageStream, and an AbstractChat for two turns and a
regenerate; every chunk of every response is validated with the package's uiMessageChunkSchema
(tests/js/ai_client.mjs). The parts the client builds are compared with the lmstream events of
the same run, recorded on the server side.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lmstream import LMRequestProcessor
from lmstream.events import CallbackEventHandler, Event, EventEmitter
from lmstream.protocols.errors import browser_error_text
from tests.serve_helpers import ServedApp
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_app import get_time, get_weather


class RecordingProcessor(LMRequestProcessor):
    """Records every request's events as the server's request produces them (same run)."""

    runs: list[list[Event]]

    def _recorder(self) -> CallbackEventHandler:
        events: list[Event] = []
        self.runs.append(events)
        return CallbackEventHandler(events.append)

    def process(self, *args: Any, event_emitter: EventEmitter | None = None, **kwargs: Any) -> Any:
        if event_emitter is not None:
            event_emitter.add_handler(self._recorder())
        return super().process(*args, event_emitter=event_emitter, **kwargs)

    def stream(self, *args: Any, event_emitter: EventEmitter | None = None, **kwargs: Any) -> Any:
        emitter = event_emitter or EventEmitter([])
        emitter.add_handler(self._recorder())
        return super().stream(*args, event_emitter=emitter, **kwargs)  # type: ignore[misc]


def recording_processor(srv: WireServer, **kw: Any) -> RecordingProcessor:
    from tests.serve_helpers import wire_processor

    base = wire_processor(srv, **kw)
    proc = RecordingProcessor(base.prompt_builder, base.lm_invoker, base.output_parser, tools=base.tools or None)
    proc.runs = []
    return proc


def node(js_dir: Path, url: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(js_dir / "ai_client.mjs"), url, *args], capture_output=True, text=True, timeout=120, cwd=js_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def check_runs(runs: list[dict[str, Any]]) -> None:
    for run in runs:
        assert run["status"] == 200
        assert run["headers"]["x-vercel-ai-ui-message-stream"] == "v1"
        assert run["invalid"] == [], "chunks the ai package's uiMessageChunkSchema rejects"
        assert run["chunks"][0]["type"] == "start"


def text_of(events: list[Event], kind: str) -> str:
    return "".join(e.value for e in events if e.type == kind)  # type: ignore[misc]


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


def test_transport_and_read_ui_message_stream_build_the_parts_of_the_events(wire, ai_js_dir):
    wire.enqueue(
        Script(chunks=fx.openai_chat_tool_calls()),
        Script(chunks=fx.openai_chat_text(("It is", " 21°C", " and 14:05."), reasoning_deltas=("Both", " tools"))),
    )
    proc = recording_processor(wire, tools=[get_weather, get_time])
    with ServedApp(proc) as app:
        out = node(ai_js_dir, app.url, "transport", "Weather and time in Paris?")
        assert app.idle()
    check_runs(out["runs"])
    assert out["errors"] == []
    (events,) = proc.runs
    parts = out["message"]["parts"]
    assert out["message"]["id"] == out["runs"][0]["chunks"][0]["messageId"]
    # steps: one per model call
    assert [p["type"] for p in parts].count("step-start") == 2
    # text and reasoning: exactly the events' deltas
    assert "".join(p["text"] for p in parts if p["type"] == "text") == text_of(events, "response")
    assert "".join(p["text"] for p in parts if p["type"] == "reasoning") == text_of(events, "thinking")
    assert all(p["state"] == "done" for p in parts if p["type"] in ("text", "reasoning"))
    # tools: input = the tool_call event's arguments; output = the tool's own value
    calls = {e.value["id"]: e.value for e in events if e.type == "tool_call"}  # type: ignore[index]
    results = {e.value["id"]: e.value for e in events if e.type == "tool_result"}  # type: ignore[index]
    tools = [p for p in parts if p["type"].startswith("tool-")]
    assert {p["toolCallId"] for p in tools} == set(calls) == {"call_wire_0", "call_wire_1"}
    for p in tools:
        assert p["type"] == f"tool-{calls[p['toolCallId']]['name']}"
        assert p["state"] == "output-available"
        assert p["input"] == calls[p["toolCallId"]]["arguments"]
    by_id = {p["toolCallId"]: p["output"] for p in tools}
    assert by_id["call_wire_0"] == results["call_wire_0"]["output"] == {"city": "Paris", "temp": 21, "unit": "celsius"}
    assert by_id["call_wire_1"] == results["call_wire_1"]["output"] == "14:05"
    # usage: the done event's
    done = events[-1]
    assert done.type == "done"
    usage = next(p for p in parts if p["type"] == "data-usage")["data"]
    assert {k: usage[k] for k in done.metadata["usage"]} == done.metadata["usage"]
    finish = out["runs"][0]["chunks"][-1]
    assert finish == {"type": "finish", "finishReason": "stop"}


def test_abstract_chat_two_turns_and_regenerate(wire, ai_js_dir):
    for answer in ("Tokyo has temples.", "Try ramen.", "Try sushi."):
        wire.enqueue(Script(chunks=fx.openai_chat_text(tuple(answer.split(" ")))))
    proc = recording_processor(wire, system_template="You are a travel guide.")
    with ServedApp(proc) as app:
        out = node(ai_js_dir, app.url, "chat", "What is in Tokyo?", "What should I eat?")
    check_runs(out["runs"])
    assert out["errors"] == [] and [f["isError"] or f["isAbort"] for f in out["finishes"]] == [False] * 3
    first, second, regen = out["afterFirst"], out["afterSecond"], out["afterRegenerate"]
    assert first["status"] == second["status"] == regen["status"] == "ready"

    def texts(state: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (m["role"], "".join(p.get("text", "") for p in m["parts"] if p["type"] == "text"))
            for m in state["messages"]
        ]

    for events, (_, answer) in zip(proc.runs, [texts(first)[1], texts(second)[3], texts(regen)[3]], strict=True):
        assert answer == text_of(events, "response")
    assert texts(regen) == [
        ("user", "What is in Tokyo?"),
        ("assistant", text_of(proc.runs[0], "response")),
        ("user", "What should I eat?"),
        ("assistant", text_of(proc.runs[2], "response")),
    ]
    ids = [m["id"] for m in second["messages"]] + [regen["messages"][3]["id"]]
    assert len(set(ids)) == 5, "every answer needs its own messageId"
    triggers = [r["request"]["trigger"] for r in out["runs"]]
    assert triggers == ["submit-message", "submit-message", "regenerate-message"]
    # the second turn and the regenerate both carry the whole conversation to the model
    for upstream in (wire.requests[1], wire.requests[2]):
        assert [(m["role"], m["content"]) for m in upstream.json["messages"]] == [
            ("system", "You are a travel guide."),
            ("user", "What is in Tokyo?"),
            ("assistant", text_of(proc.runs[0], "response")),
            ("user", "What should I eat?"),
        ]


def test_provider_error_mid_stream_puts_the_chat_in_error_state(wire, ai_js_dir):
    wire.enqueue(Script(chunks=fx.openai_chat_midstream_error(message="upstream exploded")))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("fine",))))
    proc = recording_processor(wire)
    with ServedApp(proc) as app:
        out = node(ai_js_dir, app.url, "error", "Hi")
        assert app.idle()
    check_runs(out["runs"])
    chunks = out["runs"][0]["chunks"]
    assert chunks[-1]["type"] == "error" and "finish" not in [c["type"] for c in chunks]
    error_event = proc.runs[0][-1]
    # the browser learns the kind of failure; the upstream's own text stays in the server log
    assert error_event.type == "error" and "upstream exploded" in error_event.value
    assert chunks[-1]["errorText"] == browser_error_text(error_event.metadata["error_type"])
    assert out["failed"]["status"] == "error" and error_event.metadata["error_type"] in out["failed"]["error"]
    assert "upstream exploded" not in out["failed"]["error"]
    assert out["recovered"]["status"] == "ready"  # the server keeps serving


def test_resume_stream_replays_a_running_answer_and_gets_204_when_none_runs(wire, ai_js_dir):
    import threading

    import httpx

    from tests.serve_helpers import parse_ui_stream

    words = tuple(f" part{i}" for i in range(12))
    wire.enqueue(Script(chunks=fx.openai_chat_text(words), delay_between=0.15))
    proc = recording_processor(wire)
    with ServedApp(proc) as app:
        got: dict[str, Any] = {}
        started = threading.Event()

        def post() -> None:
            body = {
                "id": "resumable",
                "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
            }
            with httpx.Client(timeout=30) as c, c.stream("POST", f"{app.url}/api/chat", json=body) as r:
                started.set()
                got["chunks"] = parse_ui_stream(r)

        t = threading.Thread(target=post)
        t.start()
        assert started.wait(10)
        resumed = node(ai_js_dir, app.url, "resume", "resumable")  # joins mid-answer
        t.join(30)
        after = node(ai_js_dir, app.url, "resume", "resumable")
    check_runs(resumed["runs"])
    (run,) = resumed["runs"]
    assert run["request"]["method"] == "GET" and run["request"]["url"].endswith("/api/chat/resumable/stream")
    assert run["chunks"] == got["chunks"][:-1]  # the whole answer, replayed from its start ([DONE] aside)
    assert resumed["status"] == "ready" and resumed["errors"] == []
    (message,) = resumed["messages"]
    assert "".join(p["text"] for p in message["parts"] if p["type"] == "text") == "".join(words)
    assert message["id"] == got["chunks"][0]["messageId"]
    assert after["runs"][0]["status"] == 204 and after["messages"] == []


def test_the_browser_is_told_what_happened_and_what_to_do_never_the_details() -> None:
    """"The answer failed (StreamInterruptedError)" told a person nothing they could act on."""
    cut = browser_error_text("StreamInterruptedError")
    assert "broke in the middle of the answer" in cut and "Regenerate" in cut
    assert "too long for the model" in browser_error_text("ContextOverflowError")
    assert "Wait a moment" in browser_error_text("RateLimitError")
    odd = browser_error_text("SomethingElse")
    assert odd == "The answer failed (SomethingElse). The server log has the details."
    assert browser_error_text("<script>") == "The answer failed (Error). The server log has the details."
