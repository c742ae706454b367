"""The ```python blocks of the documentation (docs/*.md, README.md): found, and run as written.

`tests/test_docs.py` uses `blocks()` to find them and runs this file as a script to execute them:
`python tests/docs_blocks.py --out RESULTS.jsonl FILE.md ...`. One process runs every file, so the
embedded model is loaded once for all of them. The blocks of one page share one namespace, in
page order (a later block may use what an earlier one defined, as a reader would); each page
starts afresh. A block whose first line is `# not run: <reason>` is only compiled: it needs a
server, a cloud key or code of the reader's own. A block with top-level `await` runs in a fresh
event loop; one that calls `asyncio.run()` itself runs as a script would.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

NOT_RUN = "# not run:"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def first_line(self) -> str:
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def not_run_reason(self) -> str | None:
        """The reason after `# not run:`, or None for a block that runs ("" when it gives none)."""
        first = self.first_line
        return first[len(NOT_RUN) :].strip() if first.startswith(NOT_RUN) else None

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every ```python fenced block of a markdown file, in order (indented fences included)."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group("indent"), m.group("fence"), m.group("lang")
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1  # past the closing fence
        if lang in ("python", "py", "python3"):
            found.append(Block(path, start, "\n".join(body) + "\n"))
    return found


def compile_block(block: Block) -> object:
    """The block's code object; top-level `await` allowed (as in a notebook)."""
    return compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _run(block: Block, namespace: dict[str, object]) -> None:
    code = compile_block(block)
    result = eval(code, namespace)  # the documentation's own code, run as written
    if inspect.iscoroutine(result):  # a block with top-level await
        asyncio.run(result)


def main(argv: list[str]) -> int:
    out = Path(argv[argv.index("--out") + 1])
    files = [Path(a) for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    with out.open("w", encoding="utf-8") as results:
        for path in files:
            namespace: dict[str, object] = {"__name__": "__main__"}
            for block in blocks(path):
                if block.not_run_reason is not None:
                    continue
                t0 = time.monotonic()
                printed = io.StringIO()
                error = None
                try:
                    with contextlib.redirect_stdout(printed):
                        _run(block, namespace)
                except BaseException:  # reported per block, the rest still run
                    error = traceback.format_exc(limit=-8)
                record = {
                    "where": block.where,
                    "ok": error is None,
                    "error": error,
                    "stdout": printed.getvalue()[-2000:],
                    "seconds": round(time.monotonic() - t0, 2),
                }
                results.write(json.dumps(record) + "\n")
                results.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
