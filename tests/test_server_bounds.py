"""Bounds of the app over real uvicorn: bad bodies (400), size (413), key (401), concurrency (429),
a provider failing mid-stream, CORS and unknown routes. Nothing malformed reaches the model."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.serve_helpers import ServedApp, parse_ui_stream, sse_data, wire_processor
from tests.test_server_app import chat_body, types, user
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (json.dumps({"id": "c", "messages": "hi"}).encode(), "messages"),
        (json.dumps({"id": "c", "messages": []}).encode(), "messages"),
        (json.dumps({"id": "c", "messages": [{"role": "robot", "parts": []}]}).encode(), "messages[0].role"),
        (
            json.dumps({"id": "c", "messages": [{"role": "user", "parts": [{"type": "text"}]}]}).encode(),
            "messages[0].parts[0].text",
        ),
        (json.dumps({"messages": [user("x")]}).encode(), "id"),
        (json.dumps({"id": "c", "trigger": "nope", "messages": [user("x")]}).encode(), "trigger"),
        (json.dumps({"id": "c", "messages": [user(str(i)) for i in range(4)]}).encode(), "messages"),
    ],
)
def test_bad_chat_bodies_get_400_naming_the_field_and_reach_no_model(wire, body, field):
    with ServedApp(wire_processor(wire), max_messages=3) as app, httpx.Client(timeout=10) as c:
        r = c.post(f"{app.url}/api/chat", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"].startswith(field + ":")
    assert wire.requests == []


def test_v1_stream_bad_bodies(wire):
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        r1 = c.post(f"{app.url}/v1/stream", json={"prompt": "a", "prompt_kwargs": {}})
        r2 = c.post(f"{app.url}/v1/stream", json={"prompt": "a", "history": [{"role": "user", "content": 3}]})
    assert r1.status_code == 400 and r1.json()["error"]["message"].startswith("prompt:")
    assert r2.status_code == 400 and r2.json()["error"]["message"].startswith("history[0].content:")
    assert wire.requests == []


def test_v1_stream_refuses_fields_it_would_have_ignored(wire):
    """A top-level `model` or `max_tokens` was silently dropped (the client believed it applied)."""
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        model = c.post(f"{app.url}/v1/stream", json={"prompt": "a", "model": "gpt-5"})
        limit = c.post(f"{app.url}/v1/stream", json={"prompt": "a", "max_tokens": 5})
        typo = c.post(f"{app.url}/v1/stream", json={"prompt": "a", "hyperparamters": {}})
    assert model.status_code == 400 and model.json()["error"]["message"].startswith("model: the model is the server's")
    assert limit.status_code == 400
    assert 'send it inside "hyperparameters", e.g. {"hyperparameters": {"max_tokens": ...}}' in limit.json()["error"][
        "message"
    ]
    assert typo.status_code == 400 and "not a field of /v1/stream" in typo.json()["error"]["message"]
    assert wire.requests == []


def test_oversized_body_gets_413(wire):
    big = chat_body(user("x" * 5000))
    with ServedApp(wire_processor(wire), max_body_bytes=2000) as app, httpx.Client(timeout=10) as c:
        r = c.post(f"{app.url}/api/chat", json=big)
        chunked = c.post(
            f"{app.url}/api/chat",
            content=iter([json.dumps(big).encode()]),
            headers={"content-type": "application/json"},
        )  # no content-length
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("body:")
    assert chunked.status_code == 413
    assert wire.requests == []


def test_api_key_required_except_health_and_page_and_never_echoed(wire):
    key = "sk-serve-secret-1234"
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))))
    with ServedApp(wire_processor(wire), api_key=key) as app, httpx.Client(timeout=10) as c:
        none = c.post(f"{app.url}/api/chat", json=chat_body())
        wrong = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"authorization": "Bearer nope"})
        stop = c.post(f"{app.url}/api/chat/x/stop", json={})
        assert c.get(f"{app.url}/healthz").status_code == 200
        assert c.get(f"{app.url}/").status_code == 200
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(), headers={"authorization": f"Bearer {key}"}) as r:
            ok = parse_ui_stream(r)
    for resp in (none, wrong, stop):
        assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
        assert key not in resp.text and resp.headers["www-authenticate"] == "Bearer"
    assert types(ok)[-2] == "finish"
    assert key not in repr(app.state.guard)


def test_over_max_concurrent_gets_429_and_running_streams_are_unaffected(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("a", "b", "c")), delay_between=0.2))
    with ServedApp(wire_processor(wire), max_concurrent=1) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            it = sse_data(r.iter_lines())
            next(it)
            busy = c.post(f"{app.url}/api/chat", json=chat_body(chat_id="other"))
            busy2 = c.post(f"{app.url}/v1/stream", json={"prompt": "x"})
            rest = list(it)
        assert app.idle()
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"]["type"] == "rate_limit_error" and busy2.status_code == 429
    assert json.loads(rest[-2]) == {"type": "finish", "finishReason": "stop"} and rest[-1] == "[DONE]"
    assert len(wire.requests) == 1


def test_provider_error_mid_stream_sends_error_chunk_and_the_server_keeps_serving(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_midstream_error()), Script(chunks=fx.openai_chat_text(("fine",))))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            failed = parse_ui_stream(r)
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            fine = parse_ui_stream(r)
        assert app.idle()
    t = types(failed)
    assert t[-3:] == ["text-end", "error", "[DONE]"] and "finish" not in t
    assert "".join(c["delta"] for c in failed if c["type"] == "text-delta") == "Partial answer"
    assert failed[-2]["errorText"]
    assert "sk-wire-test" not in json.dumps(failed)
    assert types(fine)[-2] == "finish"


def test_cors_preflight_for_allowed_origins_and_json_404(wire):
    with ServedApp(wire_processor(wire), cors_origins=("http://app.test",), api_key="k") as app, httpx.Client() as c:
        pre = c.options(
            f"{app.url}/api/chat",
            headers={
                "origin": "http://app.test",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        other = c.options(
            f"{app.url}/api/chat",
            headers={"origin": "http://evil.test", "access-control-request-method": "POST"},
        )
        missing = c.get(f"{app.url}/nope", headers={"authorization": "Bearer k"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.test"
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
