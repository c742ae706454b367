"""Files on the chat page in real Chromium: attach by button, paste and drag-and-drop; removal
before sending; limits shown; the request carries the files; thumbnails (blob: URLs) in the
composer and the history; a reload keeps them without base64 in the saved chat; a model's image
streamed with partial previews reaches the page as one image updated in place."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from lmstream import LMRequestProcessor, OpenAILMInvoker, PromptBuilder
from lmstream.protocols.files import FileLimits
from tests import files_support as f
from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .test_server_page import wait_js

SHOWN = "() => [...document.querySelectorAll('.msg.user .files img')].every(i => i.naturalWidth === 16 && i.src.startsWith('blob:'))"  # noqa: E501
RED, BLUE = f.png(16, 16, (220, 30, 30)), f.png(16, 16, (30, 60, 220))


def shoot(page: Any, name: str) -> bytes:
    where = os.environ.get("LMSTREAM_SCREENSHOTS")
    png: bytes = page.screenshot(path=str(Path(where) / name) if where else None)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return png


def _js_file(data: bytes, name: str, mime: str) -> dict[str, Any]:
    return {"b64": base64.b64encode(data).decode(), "name": name, "type": mime}


DROP = """([f, kind]) => {
  const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer(); dt.items.add(new File([bytes], f.name, { type: f.type }));
  const opts = { bubbles: true, cancelable: true };
  if (kind === "paste") {
    document.getElementById("input").dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, ...opts }));
  }
  else { const app = document.getElementById("app");
    app.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, ...opts }));
    app.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, ...opts })); }
}"""


def _sent_files(req: Any) -> list[bytes]:
    out = []
    for m in req.json["messages"]:
        for p in m["content"] if isinstance(m["content"], list) else []:
            if p["type"] == "image_url":
                out.append(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))
            elif p["type"] == "file":
                out.append(base64.b64decode(p["file"]["file_data"].split(",", 1)[1]))
    return out


def test_attach_by_button_paste_and_drop_send_show_and_survive_a_reload(page: Any, tmp_path: Path) -> None:
    (tmp_path / "red.png").write_bytes(RED)
    (tmp_path / "big.png").write_bytes(f.png(8, 8) + bytes(3000))
    with WireServer(repeat_last=True) as wire, ServedApp(
        wire_processor(wire), file_limits=FileLimits(max_file_bytes=2000)
    ) as app:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Two", " squares", " and", " a", " report."))))
        page.goto(app.url + "/")
        wait_js(page, "() => document.getElementById('filehint').textContent.includes('2 kB each')")
        # button
        page.set_input_files("#file", str(tmp_path / "red.png"))
        page.locator("#tray .file-chip img").first.wait_for()
        # limits are checked before upload: the big one is refused with the limit named
        page.set_input_files("#file", str(tmp_path / "big.png"))
        page.locator("#filemsg", has_text="the limit is 2 kB per file").wait_for()
        # paste and drag-and-drop
        page.evaluate(DROP, [_js_file(BLUE, "blue.png", "image/png"), "paste"])
        page.evaluate(DROP, [_js_file(f.PDF, "report.pdf", "application/pdf"), "drop"])
        page.evaluate(DROP, [_js_file(f.HTML, "evil.png", "image/png"), "drop"])  # HTML named .png: refused
        page.locator("#filemsg", has_text="evil.png: this kind of file cannot be attached").wait_for()
        wait_js(page, "() => document.querySelectorAll('#tray .file-chip').length === 3")
        assert page.locator("#tray img").count() == 2
        assert all(s.startswith("blob:") for s in page.eval_on_selector_all("#tray img", "ns => ns.map(n => n.src)"))
        # removal before sending
        page.evaluate(DROP, [_js_file(f.png(4, 4, (0, 200, 0)), "green.png", "image/png"), "paste"])
        wait_js(page, "() => document.querySelectorAll('#tray .file-chip').length === 4")
        page.get_by_role("button", name="Remove green.png").click()
        wait_js(page, "() => document.querySelectorAll('#tray .file-chip').length === 3")
        shoot(page, "files-composer.png")
        page.locator("textarea").fill("What are these?")
        page.locator("textarea").press("Enter")
        page.locator(".msg.assistant .stats").wait_for()
        assert page.locator("#tray").is_hidden()
        assert _sent_files(wire.requests[0]) == [RED, BLUE, f.PDF]  # the request carried every file
        thumbs = page.locator(".msg.user .files img")
        wait_js(page, SHOWN)
        assert thumbs.count() == 2 and page.locator(".msg.user .files .file-chip", has_text="report.pdf").count() == 1
        saved = page.evaluate("() => JSON.stringify(Object.fromEntries(Object.entries(localStorage)))")
        assert "base64" not in saved and "/api/files/" in saved  # the saved chat keeps references only
        shoot(page, "files-sent.png")
        # a second turn sends the references, and the model still gets the bytes
        page.locator("textarea").fill("Which is red?")
        page.locator("textarea").press("Enter")
        wait_js(page, "() => document.querySelectorAll('.msg.assistant .stats').length === 2")
        assert _sent_files(wire.requests[1]) == [RED, BLUE, f.PDF]
        # a reload keeps the thumbnails (fetched from the server's blob store, not the saved chat)
        page.reload()
        wait_js(page, "() => document.querySelectorAll('.msg.user .files img').length === 2")
        wait_js(page, SHOWN)
        shoot(page, "files-reloaded.png")


def test_partial_images_from_a_responses_replay_are_one_image_updated_in_place(page: Any) -> None:
    previews = [f.png(32, 32, (40, 40, 40)), f.png(32, 32, (120, 120, 120))]
    final = f.png(32, 32, (230, 40, 40))
    with WireServer() as wire:
        inv = OpenAILMInvoker(
            "gpt-4.1-mini",
            api_key="sk-wire",
            base_url=wire.base_url + "/v1",
            default_hyperparameters={"image_generation": {"partial_images": 2}},
        )
        lmrp = LMRequestProcessor(PromptBuilder(), inv)
        chunks = fx.openai_responses_image(previews, final, text_deltas=("Done.",))
        wire.enqueue(Script(chunks=chunks, delay_between=0.25))
        with ServedApp(lmrp) as app:
            page.goto(app.url + "/")
            page.evaluate(
                """() => { window.__srcs = []; new MutationObserver((ms) => { for (const m of ms) {
                     const img = m.type === 'attributes' ? m.target : null;
                     if (img && img.tagName === 'IMG' && img.closest('.msg.assistant')) window.__srcs.push(img); } })
                   .observe(document.getElementById('msgs'),
                            { subtree: true, attributes: true, attributeFilter: ['src'] }); }"""
            )
            page.locator("textarea").fill("Draw a red square")
            page.locator("textarea").press("Enter")
            page.locator(".msg.assistant .stats").wait_for()
            wait_js(page, "() => document.querySelector('.msg.assistant img')?.naturalWidth === 32")
            assert page.locator(".msg.assistant img").count() == 1
            one = page.evaluate("() => window.__srcs.length >= 3 && window.__srcs.every(i => i === window.__srcs[0])")
            assert one, "the previews and the image were not one <img> updated in place"
            assert page.evaluate("() => window.__srcs[0] === document.querySelector('.msg.assistant img')")
            red = page.evaluate(
                """() => { const i = document.querySelector('.msg.assistant img');
                   const c = document.createElement('canvas'); c.width = c.height = 32;
                   const g = c.getContext('2d'); g.drawImage(i, 0, 0);
                   return [...g.getImageData(16, 16, 1, 1).data]; }"""
            )
            assert red[:3] == [230, 40, 40]  # the final image, not a preview
            saved = page.evaluate("() => Object.values(localStorage).join('')")
            assert saved.count(base64.b64encode(final).decode()) == 1
            assert base64.b64encode(previews[0]).decode() not in saved  # previews are not kept
            shoot(page, "files-generated.png")
            body = json.dumps(wire.requests[0].json)
            assert '"image_generation"' in body
