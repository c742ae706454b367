"""Main-thread cost of rendering a streamed markdown answer in Chromium, side by side.

Each renderer gets the same deltas in the same page, one delta per task (as network reads
arrive), and renders on animation frames as it chooses; the table gives Chromium's main-thread
CPU time (`ThreadTime`) until the last delta is on screen, and the ratio to lmstream's page.

- `lmstream page`: `static/markdown.js` as the chat page uses it (markdown-it 15.0.3 tokens ->
  DOM; finished blocks kept, only the last one rebuilt, at most once per frame, >= 50 ms apart).
- `markdown-it full`: the same markdown-it, the whole text re-rendered into the DOM once per frame
  (`md.render` -> `innerHTML`), a common way chat UIs stream markdown.
- `text per delta`: the whole text set as one text node on every delta, scrolled each time (what
  this page did before it rendered markdown).

    python benchmarks/bench_page_render.py            # needs Debian's chromium and playwright
    python benchmarks/bench_page_render.py --deltas 2000,20000 --line-kb 300
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]  # lmstream and the served-app helper of the tests

HARNESS = """async ([kind, deltas]) => {
  const { MarkdownView } = await import('./static/markdown.js');
  const md = (await import('./static/vendor/markdown-it.min.mjs')).default({ html: false });
  const log = document.getElementById('log'); const box = document.createElement('div');
  document.getElementById('msgs').replaceChildren(box);
  const ch = new MessageChannel(); let wake = null; ch.port1.onmessage = () => wake();
  const tick = () => new Promise((r) => { wake = r; ch.port2.postMessage(0); });   // one delta per task (unclamped)
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  let text = '', dirty = false, last = 0, view = kind === 'lmstream page' ? new MarkdownView(box) : null;
  const render = () => {
    if (kind === 'lmstream page') { if (view.render(false)) return true; }
    else if (kind === 'markdown-it full') box.innerHTML = md.render(text);
    log.scrollTop = log.scrollHeight; return false;
  };
  const loop = async () => { for (;;) { await frame(); if (!dirty) continue;
    if (kind === 'lmstream page' && performance.now() - last < 50) continue;
    last = performance.now(); dirty = render(); if (done && !dirty) return; } };
  let done = false; const painter = kind === 'text per delta' ? null : loop();
  for (const d of deltas) {
    text += d;
    if (view) view.append(d);
    if (kind === 'text per delta') { box.textContent = text; log.scrollTop = log.scrollHeight; } else dirty = true;
    await tick();
  }
  done = true; dirty = true;
  if (painter) await painter;
  if (view) view.render(true);
  return box.textContent.length;
}"""


def deltas_of(n: int) -> list[str]:
    block = "Some **bold** words and `code` in a paragraph that goes on.\n\n- a list item\n- another one\n\n"
    fence = "```python\n" + "x = compute(x) + 1\n" * 10 + "```\n\n"
    text = (block * 3 + fence) * (n * 6 // len(block * 3 + fence) + 1)
    return [text[i * 6 : i * 6 + 6] for i in range(n)]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deltas", default="2000,20000", help="comma-separated delta counts (6 chars each)")
    ap.add_argument(
        "--line-kb", type=int, default=300, help="also one line of this many kB in 100-char deltas (0: skip)"
    )
    ap.add_argument("--kinds", default="lmstream page,markdown-it full,text per delta")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds before a renderer is given up on")
    args = ap.parse_args()
    from playwright.async_api import async_playwright
    from tests.serve_helpers import ServedApp

    from lmstream import LMRequestProcessor, PromptBuilder
    from lmstream.testing import ScriptedLMInvoker

    cases = [(f"{int(n):,} deltas", deltas_of(int(n))) for n in args.deltas.split(",")]
    if args.line_kb:
        line = ("lorem ipsum dolor sit amet " * (args.line_kb * 40))[: args.line_kb * 1000]
        cases.append((f"one {args.line_kb} kB line", [line[i : i + 100] for i in range(0, len(line), 100)]))
    kinds = args.kinds.split(",")
    chromium = shutil.which("chromium") or "chromium"
    rows: dict[str, dict[str, str]] = {}
    with ServedApp(LMRequestProcessor(PromptBuilder(), ScriptedLMInvoker(["-"]))) as app:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
            for name, deltas in cases:
                base = None
                for kind in kinds:
                    page = await browser.new_page(viewport={"width": 900, "height": 760})
                    await page.goto(app.url + "/")
                    cdp = await page.context.new_cdp_session(page)
                    await cdp.send("Performance.enable")

                    async def cpu() -> float:
                        m = (await cdp.send("Performance.getMetrics"))["metrics"]  # noqa: B023
                        return next(x["value"] for x in m if x["name"] == "ThreadTime")

                    t0 = await cpu()
                    try:
                        await asyncio.wait_for(page.evaluate(HARNESS, [kind, deltas]), args.limit)
                        s = await cpu() - t0
                        base = s if base is None else base
                        rows.setdefault(name, {})[kind] = f"{s:.2f} s ({s / base:.1f}x)"
                    except TimeoutError:
                        rows.setdefault(name, {})[kind] = f"> {args.limit:.0f} s (gave up)"
                    await page.close()
            version = browser.version
            await browser.close()
    print(f"\nmain-thread CPU time to render a streamed answer (Chromium {version}; ratio to lmstream page)\n")
    print("| case | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells.get(k, "") for k in kinds) + " |")


if __name__ == "__main__":
    asyncio.run(main())
