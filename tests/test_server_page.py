"""The chat page at `/` in real Chromium (Debian's `chromium`, driven by Playwright for Python).

A person types a question and presses Enter, sees tokens arrive before the answer is complete,
presses Stop mid-answer (the upstream connection is then closed), sees thinking, tool calls,
usage and errors. `LMSTREAM_SCREENSHOT=docs/chat.png` also saves the finished answer's picture.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_app import get_time, get_weather


def tokens(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r" ?\S+", text))


def wait_js(page: Any, predicate: str, arg: Any = None, timeout: float = 10.0) -> None:
    """`page.wait_for_function` polls with `eval`, which the page's CSP forbids: poll from here."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"not true within {timeout} s: {predicate}"
        time.sleep(0.02)


def ask(page: Any, url: str, question: str) -> None:
    page.goto(url + "/")
    box = page.locator("textarea")
    box.fill(question)
    box.press("Enter")


def test_tokens_arrive_before_the_answer_completes_and_stop_closes_upstream(page):
    words = tuple(f" word{i}" for i in range(60))
    with WireServer() as wire, ServedApp(wire_processor(wire)) as app:
        wire.enqueue(Script(chunks=fx.openai_chat_text(words), delay_between=0.1))  # ~6 s if left alone
        ask(page, app.url, "Tell me a long story")
        page.locator(".msg.user .bubble", has_text="Tell me a long story").wait_for()
        answer = page.locator(".msg.assistant .text").first
        answer.wait_for()
        wait_js(page, "document.querySelector('.msg.assistant .text').textContent.split('word').length > 3")
        partial = answer.text_content()
        assert page.locator(".msg.assistant.streaming").count() == 1, "still streaming"
        assert page.locator("#stop").is_visible() and not page.locator("#send").is_visible()
        wait_js(
            page, "n => document.querySelector('.msg.assistant .text').textContent.length > n", arg=len(partial)
        )  # and more keeps coming, token by token
        page.get_by_role("button", name="Stop").click()
        t0 = time.monotonic()
        assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 1.0), "upstream still open 1 s after Stop"
        assert time.monotonic() - t0 < 1.0
        page.locator(".stopped", has_text="Stopped").wait_for()
        assert page.locator(".msg.assistant.streaming").count() == 0
        assert page.locator("#send").is_visible() and not page.locator("#stop").is_visible()
        assert len(answer.text_content()) < len("".join(words))
        assert app.idle()
        assert wire.requests[0].outcome == "client-closed"


def test_finished_answer_shows_thinking_tools_and_usage(page):
    with WireServer() as wire, ServedApp(wire_processor(wire, tools=[get_weather, get_time])) as app:
        wire.enqueue(
            Script(chunks=fx.openai_chat_tool_calls(), delay_between=0.02),
            Script(
                chunks=fx.openai_chat_text(
                    tokens(
                        "It is 21 °C in Paris right now, and the local time is 14:05 — "
                        "a good moment for a walk along the Seine."
                    ),
                    reasoning_deltas=("The user wants", " the weather and the time;", " both tools answered."),
                    usage=fx.openai_chat_usage(58, 31),
                ),
                delay_between=0.02,
            ),
        )
        ask(page, app.url, "What's the weather and the time in Paris?")
        stats = page.locator(".msg.assistant .stats")
        stats.wait_for()
        text = page.locator(".msg.assistant .text").inner_text()
        assert text.startswith("It is 21 °C in Paris") and text.endswith("Seine.")
        assert page.locator(".msg.assistant.streaming").count() == 0
        tools = page.locator(".tool")
        assert tools.count() == 2
        assert "get_weather" in tools.nth(0).inner_text() and '"city":"Paris"' in tools.nth(0).inner_text()
        assert '"temp":21' in tools.nth(0).inner_text() and "done" in tools.nth(0).inner_text()
        assert "14:05" in tools.nth(1).inner_text()
        thinking = page.locator("details.thinking")
        assert thinking.count() == 1 and not thinking.evaluate("d => d.open")  # collapsed once done
        thinking.locator("summary").click()
        assert "both tools answered" in thinking.inner_text()
        s = stats.inner_text()
        assert "in ·" in s and "first token" in s and "tokens/s" in s
        shot = os.environ.get("LMSTREAM_SCREENSHOT")
        target = Path(shot) if shot else None
        page.set_viewport_size({"width": 900, "height": 580})
        png = page.screenshot(path=str(target) if target else None, full_page=False)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_provider_error_shows_a_clear_error_state(page):
    with WireServer() as wire, ServedApp(wire_processor(wire)) as app:
        wire.enqueue(Script(chunks=fx.openai_chat_midstream_error(message="The upstream model crashed")))
        ask(page, app.url, "Hi")
        err = page.locator(".msg.assistant .error")
        err.wait_for()
        # the kind of failure, not the upstream's own words (they may hold internal URLs or keys)
        assert "StreamInterruptedError" in err.inner_text() and "crashed" not in err.inner_text()
        assert page.get_by_role("button", name="Retry").is_visible()
        assert page.locator("#send").is_visible()
        # Retry regenerates: the server keeps serving
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Recovered", "."))))
        page.get_by_role("button", name="Retry").click()
        page.locator(".msg.assistant .stats").wait_for()
        assert page.locator(".msg.assistant .text").inner_text() == "Recovered."
        assert wire.requests[1].json["messages"] == [{"role": "user", "content": "Hi"}]


def test_shift_enter_is_a_new_line_and_the_key_prompt_on_401(page):
    with WireServer() as wire, ServedApp(wire_processor(wire), api_key="sk-page-key") as app:
        page.goto(app.url + "/")
        box = page.locator("textarea")
        box.type("line one")
        box.press("Shift+Enter")
        box.type("line two")
        assert box.input_value() == "line one\nline two"
        box.press("Enter")
        page.locator("#keyrow").wait_for()
        assert "This server needs an access key" in page.locator("#keyrow").inner_text()
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Welcome",))))
        page.locator("#key").fill("sk-page-key")
        page.locator("#key").press("Enter")
        page.locator(".msg.assistant .stats").wait_for()
        assert page.locator(".msg.assistant .text").inner_text() == "Welcome"
        assert wire.requests[0].json["messages"][-1] == {"role": "user", "content": "line one\nline two"}
