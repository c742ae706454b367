"""`lmstream serve`'s app joins the caller's trace: a browser's W3C `traceparent` becomes the
remote parent of the request's spans, so browser -> server -> model is one trace."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.otel_support import Telemetry, telemetry
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CHAT = {"id": "c1", "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    with telemetry() as t:
        yield t


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/stream", {"prompt": "x"}),
        (
            "/api/chat",
            {"id": "c1", "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
        ),
    ],
)
def test_traceparent_is_the_parent_of_the_request(tel: Telemetry, path: str, body: dict[str, object]) -> None:
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello", " world"))))
        with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
            headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            with c.stream("POST", f"{app.url}{path}", json=body, headers=headers) as r:
                assert r.status_code == 200
                r.read()
            assert app.idle()
    parent = tel.span("lmstream.stream")
    assert format(parent.context.trace_id, "032x") == TRACE_ID
    assert parent.parent is not None and parent.parent.is_remote
    assert format(parent.parent.span_id, "016x") == PARENT_ID
    chat = tel.span("chat wire-model")
    assert chat.context.trace_id == parent.context.trace_id and chat.parent.span_id == parent.context.span_id


def test_without_traceparent_the_request_starts_a_trace(tel: Telemetry) -> None:
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Hello",))))
        with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
            assert c.post(f"{app.url}/v1/stream", json={"prompt": "x"}).status_code == 200
            assert app.idle()
    assert tel.span("lmstream.stream").parent is None


def test_a_browser_may_send_traceparent_cross_origin() -> None:
    with WireServer() as wire, ServedApp(wire_processor(wire), cors_origins=("http://app.test",)) as app:
        with httpx.Client(timeout=10) as c:
            pre = c.options(
                f"{app.url}/api/chat",
                headers={
                    "origin": "http://app.test",
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "content-type, traceparent, tracestate",
                },
            )
    assert pre.status_code == 200
    allowed = pre.headers["access-control-allow-headers"].lower()
    assert "traceparent" in allowed and "tracestate" in allowed
