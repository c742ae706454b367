"""A hostile client against the app over real uvicorn (in-memory registry): what it may choose,
what it is refused, and what the server keeps to itself. Each test is one finding of an attack."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from tests.serve_helpers import ServedApp, parse_ui_stream, sse_data, wire_processor
from tests.test_server_app import chat_body, types
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

WORDS = tuple(f" w{i}" for i in range(30))


@pytest.fixture
def wire():
    with WireServer() as srv:
        yield srv


def deep(levels: int) -> Any:
    v: Any = "x"
    for _ in range(levels):
        v = [v]
    return v


def error_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.text[:200]
    err: dict[str, Any] = r.json()["error"]
    return err


# --------------------------------------------------------------------------- bodies and slots


def test_a_300_deep_field_is_400_and_costs_no_slot(wire):
    with ServedApp(wire_processor(wire), max_concurrent=2) as app, httpx.Client(timeout=10) as c:
        r = c.post(f"{app.url}/api/chat", json=chat_body(ignored=deep(300)))
        assert r.status_code == 400 and error_of(r)["message"].startswith("body: nested deeper than")
        assert app.idle() and app.state.guard.active == 0
    assert wire.requests == []


def test_healthz_reports_the_real_counts(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.05))
    with ServedApp(wire_processor(wire), max_concurrent=7) as app, httpx.Client(timeout=10) as c:
        idle = c.get(f"{app.url}/healthz").json()
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            it = sse_data(r.iter_lines())
            next(it)
            busy = c.get(f"{app.url}/healthz").json()
            list(it)
        assert app.idle()
    assert idle["streams"] == 0 and idle["max_concurrent"] == 7 and idle["answers"] == 0
    assert busy["streams"] == 1 and busy["running"] == 1 and busy["answers"] == 1


# --------------------------------------------------------------------------- what a client may choose


@pytest.mark.parametrize(
    ("hyper", "field"),
    [
        ({"extra_body": {"model": "gpt-4o", "n": 16}}, "hyperparameters.extra_body"),
        ({"model": "other"}, "hyperparameters.model"),
        ({"messages": [{"role": "user", "content": "x"}]}, "hyperparameters.messages"),
        ({"tools": []}, "hyperparameters.tools"),
        ({"n": 16}, "hyperparameters.n"),
        ({"temperature": "hot"}, "hyperparameters.temperature"),
        ({"max_tokens": 100_000_000}, "hyperparameters.max_tokens"),
        ({"max_tokens": True}, "hyperparameters.max_tokens"),
        ({"stop": ["a"] * 50}, "hyperparameters.stop"),
        ("warm", "hyperparameters"),
    ],
)
def test_clients_choose_only_allowed_sampling_settings_within_caps(wire, hyper, field):
    with ServedApp(wire_processor(wire), max_tokens=1000) as app, httpx.Client(timeout=10) as c:
        chat = c.post(f"{app.url}/api/chat", json=chat_body(hyperparameters=hyper))
        stream = c.post(f"{app.url}/v1/stream", json={"prompt": "x", "hyperparameters": hyper})
        assert app.idle()
    for r in (chat, stream):
        assert r.status_code == 400, r.text[:300]
        assert error_of(r)["message"].startswith(field + ":")
    assert wire.requests == []


def test_allowed_settings_reach_the_upstream_and_process_keeps_full_control(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))), Script(chunks=fx.openai_chat_text(("ok",))))
    proc = wire_processor(wire)
    hyper = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "stop": ["\n\n"], "seed": 7}
    with ServedApp(proc, max_tokens=1000) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(hyperparameters=hyper)) as r:
            assert types(parse_ui_stream(r))[-2] == "finish"
        assert app.idle()
    sent = wire.requests[0].json
    assert {k: sent[k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 7,
    }
    assert sent["stop"] == ["\n\n"] and sent["model"] == "wire-model"

    import asyncio

    async def direct() -> None:  # a library user is no client: extra_body goes through
        try:
            await proc.process(prompt_kwargs={}, extra_contents=["hi"], hyperparameters={"extra_body": {"n": 2}})
        finally:
            await proc.lm_invoker.aclose()

    asyncio.run(direct())
    assert wire.requests[1].json["n"] == 2


def test_unknown_prompt_kwargs_and_missing_keys_are_400_naming_the_field(wire):
    proc = wire_processor(wire, user_template="Q: {q}", system_template="Tone: {tone}", key_defaults={"tone": "dry"})
    with ServedApp(proc) as app, httpx.Client(timeout=10) as c:
        unknown = c.post(f"{app.url}/v1/stream", json={"prompt_kwargs": {"q": "x", "secret_mode": "on"}})
        bad_type = c.post(f"{app.url}/v1/stream", json={"prompt_kwargs": {"q": {"nested": 1}}})
        missing = c.post(f"{app.url}/v1/stream", json={"prompt_kwargs": {"tone": "warm"}})
        assert app.idle()
    assert unknown.status_code == 400 and error_of(unknown)["message"].startswith("prompt_kwargs.secret_mode:")
    assert bad_type.status_code == 400 and error_of(bad_type)["message"].startswith("prompt_kwargs.q:")
    assert missing.status_code == 400 and "q" in error_of(missing)["message"]
    assert wire.requests == []


# --------------------------------------------------------------------------- requests a browser forges


def test_every_post_must_be_json_host_must_be_allowed_and_origin_must_be_listed(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))))
    with ServedApp(wire_processor(wire), cors_origins=("http://app.test",)) as app, httpx.Client(timeout=10) as c:
        raw = json.dumps(chat_body())
        form = c.post(f"{app.url}/api/chat", content=raw, headers={"content-type": "text/plain"})
        stop = c.post(f"{app.url}/api/chat/chat1/stop")
        rebound = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"host": f"evil.test:{app.port}"})
        page = c.get(f"{app.url}/", headers={"host": "evil.test"})
        foreign = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"origin": "http://evil.test"})
        null = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"origin": "null"})
        health = c.get(f"{app.url}/healthz", headers={"host": "10.0.0.3:8000"})  # load balancers: any Host
        with c.stream(
            "POST", f"{app.url}/api/chat", json=chat_body(), headers={"origin": "http://app.test", "host": "localhost"}
        ) as r:
            listed = parse_ui_stream(r)
        assert app.idle()
    assert form.status_code == 415 and stop.status_code == 415
    assert error_of(form)["message"].startswith("content-type:")
    assert rebound.status_code == 421 and page.status_code == 421 and "--allowed-host" in error_of(page)["message"]
    assert foreign.status_code == 403 and null.status_code == 403
    assert health.status_code == 200
    assert types(listed)[-2] == "finish"
    assert len(wire.requests) == 1


def test_allowed_hosts_extend_the_loopback_names(wire):
    with ServedApp(wire_processor(wire), allowed_hosts=("chat.example.com",)) as app, httpx.Client(timeout=10) as c:
        ok = c.get(f"{app.url}/", headers={"host": "chat.example.com"})
        loop = c.get(f"{app.url}/", headers={"host": f"[::1]:{app.port}"})
        other = c.get(f"{app.url}/", headers={"host": "chat.example.com.evil.test"})
    assert ok.status_code == 200 and loop.status_code == 200 and other.status_code == 421


# --------------------------------------------------------------------------- auth details


def test_auth_bearer_any_case_one_header_and_keys_compared_as_bytes(wire):
    key = "clé-secrète-1234"
    wire.enqueue(Script(chunks=fx.openai_chat_text(("ok",))), Script(chunks=fx.openai_chat_text(("ok",))))
    with ServedApp(wire_processor(wire), api_key=key) as app, httpx.Client(timeout=10) as c:
        token = key.encode()
        lower = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"authorization": b"bearer " + token})
        upper = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"authorization": b"BEARER " + token})
        two = c.post(
            f"{app.url}/api/chat",
            json=chat_body(),
            headers=[("authorization", b"Bearer " + token), ("authorization", b"Bearer nope")],
        )
        basic = c.post(f"{app.url}/api/chat", json=chat_body(), headers={"authorization": b"Basic " + token})
        assert app.idle()
    assert lower.status_code == 200 and upper.status_code == 200
    assert two.status_code == 400 and "one Authorization header" in error_of(two)["message"]
    assert basic.status_code == 401
    assert key not in two.text and key not in basic.text


def test_the_page_is_served_with_a_csp_and_nosniff(wire):
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        r = c.get(f"{app.url}/")
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["script-src"] and "'self'" in directives["script-src"]
    assert all(s == "'self'" or s.startswith("'sha256-") for s in directives["script-src"])
    assert r.headers["x-content-type-options"] == "nosniff"


# --------------------------------------------------------------------------- failures and what browsers see


def test_error_text_to_browsers_is_generic_and_the_log_has_no_secret(wire, caplog):
    leak = "upstream http://10.1.2.3:9000/v1 said: bad request, headers Authorization: Bearer sk-live-abcdef123456"
    wire.enqueue(Script(chunks=fx.openai_chat_midstream_error(message=leak)))
    caplog.set_level(logging.WARNING, logger="lmstream.server")
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            chunks = parse_ui_stream(r)
        assert app.idle()
    error = next(ch for ch in chunks if ch["type"] == "error")
    assert "StreamInterruptedError" in error["errorText"]
    assert "10.1.2.3" not in json.dumps(chunks) and "sk-live" not in json.dumps(chunks)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "10.1.2.3" in logged and "sk-live-abcdef123456" not in logged and "[redacted]" in logged


def test_an_upstream_stall_ends_with_an_error_chunk_and_frees_the_slot(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), stall_after=3, stall_max=20))
    with ServedApp(wire_processor(wire), idle_timeout=0.5) as app, httpx.Client(timeout=15) as c:
        t0 = time.monotonic()
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body()) as r:
            chunks = parse_ui_stream(r)
        took = time.monotonic() - t0
        assert app.idle()
        health = c.get(f"{app.url}/healthz").json()
    assert types(chunks)[-2:] == ["error", "[DONE]"] and "Interrupted" in chunks[-2]["errorText"]
    assert took < 5 and health["streams"] == 0
    assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 2.0)


# --------------------------------------------------------------------------- resume positions


def _resume(c: httpx.Client, url: str, chat: str, last: str | bytes | None) -> httpx.Response:
    headers = {} if last is None else {"last-event-id": last}
    return c.get(f"{url}/api/chat/{chat}/stream", headers=headers)


def test_bad_and_boundary_last_event_ids_get_json_not_500(wire):
    wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS), delay_between=0.1))
    with ServedApp(wire_processor(wire)) as app, httpx.Client(timeout=10) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="pos")) as r:
            lines = r.iter_lines()
            first_id = next(line[4:] for line in lines if line.startswith("id: "))
            answer, n = first_id.rsplit("-", 1)
            for bad in ("²".encode(), "9" * 4301, f"{answer}-{int(n) + 10_000}", f"1{answer}-1", "", "-1"):
                got = _resume(c, app.url, "pos", bad)
                assert got.status_code in (400, 410), (bad[:20], got.status_code, got.text[:100])
                assert error_of(got)["type"] in ("stream_gone", "invalid_request_error")
            list(lines)
        assert app.idle()


def test_a_resume_from_any_position_joins_the_stream_exactly(wire):
    """The SSE id rides on the last message of a frame: resuming after any id loses nothing and
    repeats nothing (a frame of one event can hold several chunks: start-step, text-start, ...).
    The final position gets just the end; positions past the answer are gone (410)."""
    from lmstream.server.registry import InMemoryChatRegistry

    class Keeping(InMemoryChatRegistry):  # keeps finished answers, so every position can be tried
        def _forget(self, chat_id: str, log: Any) -> None:
            pass

    wire.enqueue(Script(chunks=fx.openai_chat_tool_calls()))
    wire.enqueue(Script(chunks=fx.openai_chat_text(("It", " is", " 21."))))

    def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
        """Weather."""
        return {"city": city, "unit": unit}

    def get_time(timezone: str) -> str:
        """Time."""
        return "14:05"

    proc = wire_processor(wire, tools=[get_weather, get_time])
    with ServedApp(proc, registry=Keeping()) as app, httpx.Client(timeout=20) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="join")) as r:
            assert types(parse_ui_stream(r))[-2] == "finish"
        full = _messages(_resume(c, app.url, "join", None))
        ids = [m[0] for m in full if m[0] is not None]
        assert len(ids) >= 3 and _frame_sizes(full), "some frames carry several chunks"
        for i, (pos, _) in enumerate(full):
            if pos is not None:
                rest = _messages(_resume(c, app.url, "join", pos))
                assert [d for _, d in rest] == [d for _, d in full[i + 1 :]], f"resume after {pos}"
        last = _messages(_resume(c, app.url, "join", ids[-1]))
        answer, n = ids[-1].rsplit("-", 1)
        ahead = _resume(c, app.url, "join", f"{answer}-{int(n) + 1}")
        assert app.idle()
    assert [d for _, d in last] == ["[DONE]"]
    assert ahead.status_code == 410 and error_of(ahead)["type"] == "stream_gone"


def _messages(r: httpx.Response) -> list[tuple[str | None, str]]:
    """(id, data) of every SSE message."""
    assert r.status_code == 200, r.text[:200]
    out: list[tuple[str | None, str]] = []
    cur_id: str | None = None
    for line in r.text.split("\n"):
        if line.startswith("id: "):
            cur_id = line[4:]
        elif line.startswith("data: "):
            out.append((cur_id, line[6:]))
            cur_id = None
    return out


def _frame_sizes(messages: list[tuple[str | None, str]]) -> list[int]:
    """How many messages share each id (the frame before and including it)."""
    sizes, n = [], 0
    for pos, _ in messages:
        n += 1
        if pos is not None:
            sizes.append(n)
            n = 0
    return [s for s in sizes if s > 1]


def test_the_in_memory_log_is_bounded_and_a_trimmed_answer_is_410(wire):
    from lmstream.server.registry import InMemoryChatRegistry

    registry = InMemoryChatRegistry(max_events=20)
    words = tuple(f" t{i}" for i in range(120))
    wire.enqueue(Script(chunks=fx.openai_chat_text(words), delay_between=0.01))
    with ServedApp(wire_processor(wire), registry=registry) as app, httpx.Client(timeout=20) as c:
        with c.stream("POST", f"{app.url}/api/chat", json=chat_body(chat_id="long")) as r:
            seen = 0
            kept: list[int] = []
            for payload in sse_data(r.iter_lines()):
                seen += '"text-delta"' in payload
                if seen == 100:
                    kept = [len(log.events) for log in registry._runs.values()]
                    gone = _resume(c, app.url, "long", None)
        assert app.idle()
    assert kept and max(kept) <= 20
    assert gone.status_code == 410 and error_of(gone)["type"] == "stream_gone"
    assert seen == 120  # the answer itself streamed whole to its client
