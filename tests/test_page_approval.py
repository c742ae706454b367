"""The chat page in real Chromium: a tool call that needs approval shows its name and arguments
with Approve and Deny; clicking Approve runs it and the same answer goes on with the result."""

from __future__ import annotations

from typing import Any

from lmstream import LMRequestProcessor, PromptBuilder, tool
from lmstream.engine.deltas import FinishDelta, ToolCallDelta
from lmstream.testing import ScriptedLMInvoker
from tests.serve_helpers import ServedApp

from .test_server_page_chat import finished, send, shoot

ran: list[str] = []


@tool(requires_approval=True)
def send_mail(to: str, subject: str) -> dict[str, Any]:
    """Send a mail."""
    ran.append(to)
    return {"sent": True, "to": to}


def processor() -> tuple[LMRequestProcessor[Any], ScriptedLMInvoker]:
    call = [
        ToolCallDelta(0, "call_1", "send_mail", '{"to": "bob@example.com", "subject": "Hi"}'),
        FinishDelta("tool_calls"),
    ]
    inv = ScriptedLMInvoker([call, ["Mail ", "sent ", "to Bob."]])
    return LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[send_mail]), inv


def test_clicking_approve_runs_the_call_and_the_answer_goes_on(page):
    ran.clear()
    proc, inv = processor()
    with ServedApp(proc) as app:
        page.goto(app.url + "/")
        send(page, "Mail Bob")
        ask = page.locator(".msg.assistant .tool.asking")
        ask.wait_for(timeout=15_000)
        assert "send_mail" in ask.locator(".head").inner_text()
        assert "needs your approval" in ask.locator(".state").inner_text()
        assert "bob@example.com" in ask.locator("pre.in").inner_text()  # the arguments, before anything runs
        assert ran == [] and len(inv.calls) == 1
        shoot(page, "approval.png")
        ask.get_by_role("button", name="Approve").click()
        page.wait_for_function("() => document.body.innerText.includes('Mail sent to Bob.')", timeout=15_000)
        finished(page, 1)
        tool_box = page.locator(".msg.assistant .tool")
        assert tool_box.count() == 1 and page.locator(".msg.assistant").count() == 1  # one answer, continued
        assert "done" in tool_box.locator(".state").inner_text()
        assert '"sent":true' in tool_box.locator("pre.out").inner_text().replace(" ", "")
        assert tool_box.get_by_role("button", name="Approve").count() == 0
        shoot(page, "approved.png")
    assert ran == ["bob@example.com"] and len(inv.calls) == 2


def test_clicking_deny_never_runs_the_call(page):
    ran.clear()
    proc, inv = processor()
    with ServedApp(proc) as app:
        page.goto(app.url + "/")
        send(page, "Mail Bob")
        ask = page.locator(".msg.assistant .tool.asking")
        ask.wait_for(timeout=15_000)
        ask.get_by_role("button", name="Deny").click()
        finished(page, 1)
        page.wait_for_function("() => document.body.innerText.includes('Mail sent to Bob.')", timeout=15_000)
        assert "denied" in page.locator(".msg.assistant .tool .state").inner_text()
    assert ran == [] and "denied" in inv.calls[1][0][-1].tool_results[0].output


def test_a_running_tool_shows_its_progress(page):
    import asyncio

    from lmstream.tools import report_progress

    @tool
    async def crawl(pages: int) -> str:
        """Crawl some pages."""
        for i in range(1, pages + 1):
            await report_progress(i, pages, f"page {i}")
            await asyncio.sleep(0.4)
        return "crawled"

    call = [ToolCallDelta(0, "call_1", "crawl", '{"pages": 3}'), FinishDelta("tool_calls")]
    inv = ScriptedLMInvoker([call, ["Done."]])
    proc = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[crawl])
    with ServedApp(proc) as app:
        page.goto(app.url + "/")
        send(page, "Crawl")
        page.wait_for_function(
            "() => /running… [12]\\/3 · page [12]/.test(document.querySelector('.tool .state')?.textContent || '')",
            timeout=15_000,
        )
        finished(page, 1)
        assert page.locator(".tool .state").inner_text() == "done"
