"""History fitted to the model's window (`lmstream.window`), the CORS flag of a real
`lmstream serve`, and the page's own files served from the package."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstream import LMRequestProcessor, PromptBuilder
from lmstream.errors import ContextOverflowError
from lmstream.prompt import Message
from lmstream.testing import ScriptedLMInvoker
from lmstream.window import fit_history
from tests.serve_helpers import ServedApp, _free_port, parse_ui_stream


def proc(window: int | None, **kw: Any) -> LMRequestProcessor:
    return LMRequestProcessor(
        PromptBuilder(system_template="Be brief."), ScriptedLMInvoker(["ok"], context_window=window, **kw)
    )


def turns(n: int, size: int = 300) -> list[Message]:
    out: list[Message] = []
    for i in range(n):
        out += [Message.user(f"q{i} " + "x" * size), Message.assistant(f"a{i} " + "y" * size)]
    return out


def test_the_newest_whole_turns_are_kept_and_the_system_prompt_stays():
    p = proc(600, default_hyperparameters={"max_tokens": 100})
    history = turns(6)
    fit = fit_history(p, history, {}, ["the new question"], None)
    assert 0 < fit.dropped < len(history) and fit.dropped % 2 == 0, "cut only where a turn begins"
    assert fit.history == history[fit.dropped :] and fit.history[0].role == "user"
    msgs = p.prompt_builder.format(history=fit.history, extra_contents=["the new question"])
    assert msgs[0].role == "system"
    assert p.lm_invoker.count_tokens(msgs) <= 600 - 100
    longer = fit_history(p, history[: fit.dropped - 2] + history[fit.dropped - 2 :], {}, ["the new question"], None)
    assert longer.dropped == fit.dropped  # deterministic
    # the cut moves in pages of about half the room, so no more than that is left out
    kept = p.lm_invoker.count_tokens(fit.history)
    room = 600 - 100 - p.lm_invoker.count_tokens(p.prompt_builder.format(extra_contents=["the new question"]))
    assert kept >= room // 2 - p.lm_invoker.count_tokens(history[:2]), (kept, room)


def test_the_cut_stays_put_turn_after_turn_so_the_prompt_keeps_its_start():
    """Dropping just enough each turn moved the prompt's start every turn (nothing for the model's
    cache to reuse). Over 40 growing turns the cut moves in a few large jumps, never back."""
    p = proc(2000, default_hyperparameters={"max_tokens": 100})
    history = turns(40, size=120)
    cuts = [fit_history(p, history[: 2 * t], {}, ["next"], None).dropped for t in range(1, 41)]
    assert cuts == sorted(cuts) and cuts[-1] > 0
    moves = sum(1 for a, b in itertools.pairwise(cuts) if b != a)
    overflowing = sum(1 for c in cuts if c)
    assert moves <= overflowing // 3, (moves, cuts)


def test_no_window_or_a_fitting_history_is_left_alone():
    history = turns(6)
    assert fit_history(proc(None), history, {}, ["q"], None).dropped == 0
    assert fit_history(proc(100_000), history, {}, ["q"], None).history == history


def test_a_message_too_long_alone_is_a_clear_error():
    with pytest.raises(ContextOverflowError, match="too long for the model") as info:
        fit_history(proc(300), turns(2), {}, ["z" * 3000], {"max_tokens": 50})
    assert info.value.context_window == 300 and info.value.max_tokens == 50 and info.value.prompt_tokens > 250


def test_the_server_sends_a_data_context_part_and_refuses_a_too_long_message():
    p = proc(500, default_hyperparameters={"max_tokens": 64})
    inv = p.lm_invoker
    messages: list[dict[str, Any]] = []
    for i in range(5):
        messages.append({"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": f"q{i} " + "x" * 400}]})
        messages.append({"id": f"a{i}", "role": "assistant", "parts": [{"type": "text", "text": f"a{i} " + "y" * 400}]})
    messages.append({"id": "u9", "role": "user", "parts": [{"type": "text", "text": "last"}]})
    with ServedApp(p) as app, httpx.Client(base_url=app.url, timeout=10) as c:
        with c.stream("POST", "/api/chat", json={"id": "c1", "messages": messages}) as r:
            chunks = parse_ui_stream(r)
        ctx = [ch for ch in chunks if ch["type"] == "data-context"]
        assert len(ctx) == 1 and ctx[0]["data"]["dropped"] > 0 and chunks[0]["type"] == "start"
        sent = inv.calls[0][0]
        assert sent[0].role == "system" and sent[-1].text == "last" and len(sent) == 2 + 10 - ctx[0]["data"]["dropped"]
        big = [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "w " * 2000}]}]
        r = c.post("/api/chat", json={"id": "c2", "messages": big})
        assert r.status_code == 400 and "too long for the model" in r.json()["error"]["message"]
        assert len(inv.calls) == 1


def test_the_page_files_are_served_and_nothing_else():
    with ServedApp(proc(None), api_key="sk-k") as app, httpx.Client(base_url=app.url, timeout=10) as c:
        page = c.get("/")
        assert page.status_code == 200 and 'src="static/chat.js"' in page.text and "<script>" not in page.text
        for name, kind in [
            ("chat.js", "text/javascript"),
            ("chat.css", "text/css"),
            ("vendor/markdown-it.min.mjs", "text/javascript"),
            ("vendor/LICENSE-markdown-it.txt", "text/plain"),
        ]:
            r = c.get(f"/static/{name}")  # no key needed: the page's files hold no secret
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
        for bad in ["../app.py", "..%2Fapp.py", "chat.html", "vendor/../../app.py", ".hidden.js", "nope.js"]:
            r = c.get(f"/static/{bad}")  # a client may normalise ".." away: then it is another route (401)
            assert r.status_code in (401, 404) and "import" not in r.text, bad
        assert c.get("/api/chat/x/stream").status_code == 401


def test_lmstream_serve_cors_origin_allows_only_the_listed_origins():
    port = _free_port()
    cmd = [
        str(Path(sys.executable).with_name("lmstream")),
        "serve",
        "--model",
        "openai-compatible/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--port",
        str(port),
        "--cors-origin",
        "http://app.test:3000",
        "--cors-origin",
        "https://other.test",
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "lmstream serve did not start"
            time.sleep(0.1)
        ask = {"access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization"}
        for origin in ("http://app.test:3000", "https://other.test"):
            ok = httpx.options(url + "/api/chat", headers={"origin": origin, **ask})
            assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin
            assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        bad = httpx.options(url + "/api/chat", headers={"origin": "http://evil.test", **ask})
        assert bad.status_code >= 400 and "access-control-allow-origin" not in bad.headers
    finally:
        server.terminate()
        server.wait(10)


def test_the_embedded_model_knows_its_window_and_counts_with_its_tokenizer(local_invoker):
    assert local_invoker.context_window == local_invoker.n_ctx == 2048
    short, code = Message.user("Hello there"), Message.user("def f(x):\n    return [i * i for i in range(x)]\n" * 20)
    system = Message.system("Hi.")
    base = local_invoker.count_tokens([system])

    def share(*messages: Message) -> int:
        return local_invoker.count_tokens([system, *messages]) - base

    assert 2 < share(short) < 12
    n = share(code)
    assert 300 < n < 1100 and abs(share(short, code) - n - share(short)) <= 2
    # counted as the model reads it: without a system message SmolLM2's template adds its own (~20 tokens)
    assert local_invoker.count_tokens([short]) > local_invoker.count_tokens([system, short]) + 10


def test_a_chat_longer_than_the_window_gets_answers_from_the_embedded_model(local_invoker):
    """The real engine and tokenizer: without fitting, this history makes the engine refuse the
    message. A small `context_window` on an invoker sharing the session's engine keeps it quick."""
    from lmstream.invokers.local import LocalLMInvoker

    inv = LocalLMInvoker(context_window=320, n_threads=local_invoker.n_threads)
    assert inv.load() is local_invoker.load(), "same engine, no second model"
    p = LMRequestProcessor(PromptBuilder(system_template="You are brief."), inv)
    messages: list[dict[str, Any]] = []
    for i in range(6):
        long = f"Question {i}: tell me about city number {i}. " + "Some detail here. " * 12
        messages.append({"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": long}]})
        messages.append({"id": f"a{i}", "role": "assistant", "parts": [{"type": "text", "text": "It is old. " * 12}]})
    messages.append({"id": "u9", "role": "user", "parts": [{"type": "text", "text": "Say hi."}]})
    every = [Message.user(m["parts"][0]["text"]) for m in messages]
    assert inv.count_tokens(every) > 2 * inv.context_window, "the history really overflows"
    app = ServedApp(p)
    app.__enter__()
    try:
        with httpx.Client(base_url=app.url, timeout=60) as c:
            body = {"id": "long", "messages": messages, "hyperparameters": {"max_tokens": 8, "temperature": 0}}
            with c.stream("POST", "/api/chat", json=body) as r:
                chunks = parse_ui_stream(r)
    finally:
        app.server.should_exit = True  # not __exit__: the session's engine stays open for other tests
        assert app._thread is not None
        app._thread.join(10)
    kinds = [ch["type"] for ch in chunks]
    assert "error" not in kinds, chunks
    assert kinds[-2:] == ["finish", "[DONE]"] and "text-delta" in kinds
    dropped = next(ch["data"]["dropped"] for ch in chunks if ch["type"] == "data-context")
    assert 0 < dropped < 12 and dropped % 2 == 0
    usage = next(ch["data"] for ch in chunks if ch["type"] == "data-usage")
    assert usage["input_tokens"] <= 320 - 8
