"""What a hostile web page can do to a keyless server on loopback, tried in real Chromium (Debian's
`chromium` through Playwright): a hidden cross-site form, DNS rebinding (a name resolving to
127.0.0.1 through `--host-resolver-rules`), script injected into the chat page. None of them may
reach the model or read an answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import CHROMIUM_ARGS
from tests.serve_helpers import ServedApp, _free_port, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

BODY = {"id": "forged", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from .system_deps import missing

        missing("the playwright Python package (in the dev extra): pip install -e '.[dev]'")
    rules = "--host-resolver-rules=MAP evil.test 127.0.0.1, MAP *.evil.test 127.0.0.1"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=[*CHROMIUM_ARGS, rules])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def wire() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("secret", " answer"))))
        yield srv


class _Attacker:
    """Another origin (another port) serving one attack page."""

    def __init__(self, html: str) -> None:
        page = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Attacker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _forged_form(target: str) -> str:
    # text/plain encodes name=value: the name holds the JSON up to a padding field that eats "="
    text = json.dumps(BODY)[:-1] + ',"pad":"'
    return f"""<!doctype html><form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{text}' value='"}}'></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", headers: {{"content-type": "text/plain"}},
  body: {json.dumps(json.dumps(BODY))}}}).finally(() => document.getElementById("f").submit());
</script>"""


def test_a_cross_site_form_post_and_a_no_cors_fetch_never_reach_the_model(browser, wire):
    with ServedApp(wire_processor(wire)) as app, _Attacker(_forged_form(f"{app.url}/api/chat")) as evil:
        context = browser.new_context()
        page = context.new_page()
        statuses: list[int] = []
        page.on("response", lambda r: statuses.append(r.status) if "/api/chat" in r.url else None)
        page.goto(evil.url)
        deadline = time.monotonic() + 10
        while len(statuses) < 2 and time.monotonic() < deadline:  # the fetch, then the form
            page.wait_for_timeout(50)
        context.close()
        assert app.idle()
    assert wire.requests == [], "a forged request reached the model"
    assert statuses and all(s in (403, 415) for s in statuses), statuses


def test_dns_rebinding_neither_serves_the_page_nor_answers(browser, wire):
    with ServedApp(wire_processor(wire)) as app:
        rebound = f"http://evil.test:{app.port}"
        context = browser.new_context()
        page = context.new_page()
        first = page.goto(rebound + "/")
        assert first is not None and first.status == 421
        # a script running under the rebound origin (where, on a server that takes any Host, the
        # attacker's page would be): same-origin for the browser, so no CORS stands in the way
        got = page.evaluate(
            """async (body) => {
                const r = await fetch("/api/chat", {method: "POST", headers: {"content-type": "application/json"},
                                                    body: JSON.stringify(body)});
                return {status: r.status, text: await r.text()};
            }""",
            BODY,
        )
        context.close()
        assert app.idle()
    assert got["status"] == 421 and "secret" not in got["text"]
    assert wire.requests == []


def test_the_page_runs_its_own_script_but_no_injected_one(browser, wire):
    with ServedApp(wire_processor(wire)) as app:
        context = browser.new_context()
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(app.url + "/")
        page.locator("textarea").wait_for()  # the page's own module script ran
        page.evaluate(
            """() => {
                document.body.insertAdjacentHTML("beforeend", '<img src="x:" onerror="window.__pwned = 1">');
                const s = document.createElement("script"); s.textContent = "window.__pwned = 2";
                document.body.appendChild(s);
            }"""
        )
        page.wait_for_timeout(300)
        pwned = page.evaluate("() => window.__pwned ?? null")
        context.close()
    assert pwned is None, "an injected inline script ran"
    assert violations, "the browser reported no blocked script"
