"""What the chat page says about an answer and a chat, in real Chromium (issue 31, item 21):
an answer cut at the token limit says so and offers Continue; the queue wording (position 1 is
next in line); the chat's title from its first message at send; tables on a phone keep words
whole and scroll; saved chats that are not what the page writes do not break the list."""

from __future__ import annotations

import json
from typing import Any

from lmstream import LMRequestProcessor, PromptBuilder
from lmstream.engine.deltas import FinishDelta, UsageDelta
from lmstream.prompt import Message
from lmstream.testing import ScriptedLMInvoker
from tests.serve_helpers import ServedApp


def served(script: Any, delay: float = 0.0) -> tuple[ServedApp, ScriptedLMInvoker]:
    inv = ScriptedLMInvoker(script, delay=delay)
    return ServedApp(LMRequestProcessor(PromptBuilder(system_template="Be brief."), inv)), inv


def send(page: Any, text: str) -> None:
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def finished(page: Any, n: int) -> None:
    page.wait_for_function("n => document.querySelectorAll('.msg.assistant .actions').length >= n", arg=n)


def test_an_answer_cut_at_the_token_limit_says_so_and_continues(page: Any) -> None:
    def script(messages: list[Message], params: dict[str, Any]) -> list[Any]:
        if messages[-1].text.startswith("Continue"):
            return [" and the rest.", UsageDelta(40, 4), FinishDelta("stop")]
        return ["Tokyo is the capital", UsageDelta(12, 16), FinishDelta("length")]

    app, inv = served(script)
    with app:
        page.goto(app.url + "/")
        send(page, "Tell me about Tokyo.")
        finished(page, 1)
        first = page.locator(".msg.assistant").first
        assert first.locator(".cut").inner_text() == "Cut at 16 tokens (the answer is not finished)."
        first.get_by_role("button", name="Continue").click()
        finished(page, 2)
        # the chat protocol takes a user message last: Continue is a follow-up asking for the rest
        assert [(m.role, m.text) for m in inv.calls[1][0]][-2:] == [
            ("assistant", "Tokyo is the capital"),
            ("user", "Continue from where you stopped."),
        ]
        second = page.locator(".msg.assistant").nth(1)
        assert second.locator(".md").inner_text() == "and the rest."
        assert second.locator(".cut").count() == 0 and second.get_by_role("button", name="Continue").count() == 0
        assert not first.get_by_role("button", name="Continue").is_visible(), "only the newest answer continues"


def test_queue_wording_position_one_is_next_in_line(page: Any) -> None:
    app, _ = served(["ok"])
    with app:
        page.goto(app.url + "/")
        texts = page.evaluate(
            """async () => {
              const { Answer } = await import('./static/answer.js');
              const out = [];
              for (const position of [1, 2, 5]) {
                const a = new Answer(document.getElementById('msgs'), undefined, { regenerate() {} });
                a.chunk({ type: 'data-status', data: { state: 'queued', position }, transient: true });
                out.push(a.root.querySelector('.status').textContent);
              }
              return out;
            }"""
        )
    assert texts == [
        "waiting for the model (next in line)",
        "waiting for the model (1 ahead)",
        "waiting for the model (4 ahead)",
    ]


def test_the_title_is_the_first_message_from_the_moment_it_is_sent(page: Any) -> None:
    app, _ = served(["a slow ", "answer"], delay=0.6)
    with app:
        page.goto(app.url + "/")
        send(page, "Plan a trip to Kyoto")
        page.locator(".msg.assistant.streaming").wait_for()
        current = page.locator("#chats li.current .chat-open")
        assert current.inner_text() == "Plan a trip to Kyoto", "titled while the answer still streams"
        assert page.locator(".msg.assistant.streaming").count() == 1
        finished(page, 1)


def test_a_table_on_a_phone_keeps_words_whole_and_scrolls(browser: Any) -> None:
    table = (
        "| setting | meaning |\n|---|---|\n"
        "| internationalization | supercalifragilisticexpialidocious configuration |\n"
        "| localization | counterrevolutionaries |\n"
    )
    context = browser.new_context(viewport={"width": 390, "height": 760}, is_mobile=True)
    pg = context.new_page()
    app, _ = served([table])
    try:
        with app:
            pg.goto(app.url + "/")
            send(pg, "Show a table")
            finished(pg, 1)
            lines = pg.evaluate(
                """() => [...document.querySelectorAll('.msg.assistant td, .msg.assistant th')].map((c) => {
                     const r = document.createRange(); r.selectNodeContents(c);
                     const tops = new Set([...r.getClientRects()].map((b) => Math.round(b.top)));
                     return [c.textContent, c.textContent.includes(' ') ? 0 : tops.size]; })"""
            )
            broken = [text for text, n in lines if n > 1]
            assert lines and not broken, f"words broken across lines: {broken}"
            t = pg.locator(".msg.assistant table")
            assert t.evaluate("e => e.scrollWidth > e.clientWidth"), "the table scrolls sideways"
            assert pg.evaluate("document.documentElement.scrollWidth") <= 390, "the page itself does not"
    finally:
        context.close()


def test_saved_chats_that_are_not_what_the_page_writes_do_not_break_the_list(page: Any) -> None:
    app, _ = served(["ok"])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    bad_index = [
        {"id": "chat-a", "title": {"toString": 1}},  # JSON can hold what no string conversion survives
        {"id": "chat-b", "title": 42},
        {"id": "chat-c", "title": "Fine chat"},
        {"id": 7, "title": "no id"},
        "not a row",
    ]
    chat_a = {"id": "chat-a", "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}, 5, None]}
    with app:
        page.goto(app.url + "/")
        page.evaluate(
            "([index, a]) => { localStorage.setItem('lmstream:chats', index);"
            " localStorage.setItem('lmstream:chat:chat-a', a); }",
            [json.dumps(bad_index), json.dumps(chat_a)],
        )
        page.reload()
        page.locator("#chats li").first.wait_for()
        titles = page.locator("#chats .chat-open").all_inner_texts()
        assert titles == ["Untitled chat", "Untitled chat", "Fine chat"]
        assert page.locator(".msg.user .bubble").all_inner_texts() == ["hi"]  # chat-a opened, bad messages skipped
        send(page, "still works")
        finished(page, 1)
    assert errors == []
