"""The documentation builds, and its code runs as written.

- `mkdocs build --strict` (MkDocs + Material + mkdocstrings, the `docs` extra) succeeds, so a broken
  link, anchor or API reference fails here; and a page with a broken link does fail it.
- Every ```python block of docs/*.md and README.md runs on the embedded model
  (`local/smollm2-135m`), all in one process (tests/docs_blocks.py); a block that starts with
  `# not run: <reason>` is compiled only, and must say why.
- Every file a page names (`tests/test_faults.py`, `server/handlers.py`, ...) exists, and every flag
  of `lmstream`, `serve`, `worker` and `batch` is named on some page.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import NOT_RUN, Block, blocks, compile_block
from tests.system_deps import missing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]
RUNNABLE = [b for b in ALL_BLOCKS if b.not_run_reason is None]
NOT_RUN_BLOCKS = [b for b in ALL_BLOCKS if b.not_run_reason is not None]
BUILD_TIMEOUT_S = 180
RUN_TIMEOUT_S = 600


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for key in [k for k in env if k.endswith("_API_KEY")]:  # the blocks run offline, whatever the shell holds
        del env[key]
    return env


def _mkdocs_build(config_dir: Path, site: Path) -> subprocess.CompletedProcess[str]:
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        missing('mkdocs / mkdocstrings are not installed: pip install -e ".[docs]"')
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=config_dir,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    proc = _mkdocs_build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    # the API reference was generated from the docstrings, not left as `::: lmstream...` lines
    assert "LMRequestProcessor" in reference and ":::" not in reference
    assert "hyperparameters" in reference
    for png in DOCS.glob("*.png"):  # the screenshots stay usable by the site
        assert (tmp_path / "site" / png.name).is_file(), png.name


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    """The check above can fail: the same site with one link to a missing page does not build."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "src").symlink_to(ROOT / "src")
    (tmp_path / "docs" / "reference.md").write_text("# API reference\n", encoding="utf-8")  # faster: no griffe
    page = tmp_path / "docs" / "streaming.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the moon](no-such-page.md).\n", encoding="utf-8")
    proc = _mkdocs_build(tmp_path, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stdout + proc.stderr


def test_the_docs_have_code_to_run() -> None:
    """Guards the tests below against passing on nothing: the README and the pages have blocks."""
    assert any(b.path.name == "README.md" for b in RUNNABLE)
    assert len({b.path for b in RUNNABLE}) >= 10, sorted({b.path.name for b in RUNNABLE})
    text = "\n".join(b.code for b in RUNNABLE)
    assert "hyperparameters=" in text and "extra_contents=" in text


@pytest.mark.parametrize("block", NOT_RUN_BLOCKS, ids=lambda b: b.where)
def test_a_block_not_run_says_why_and_compiles(block: Block) -> None:
    assert block.not_run_reason, f"{block.where}: `{NOT_RUN}` needs a reason after the colon"
    compile_block(block)


def test_every_python_block_runs_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    pages = sorted({b.path for b in RUNNABLE}, key=PAGES.index)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_blocks.py"), "--out", str(out), *map(str, pages)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["where"] for r in results] == [b.where for b in sorted(RUNNABLE, key=lambda b: PAGES.index(b.path))]
    failed = [f"{r['where']}:\n{r['error']}" for r in results if not r["ok"]]
    assert not failed, "\n\n".join(failed)


# a file named in the docs, e.g. `tests/test_faults.py`, `server/handlers.py`, `lmstream/server/static/vendor/`
_PATH = re.compile(
    r"(?<![\w/.])((?:src/|tests/|benchmarks/|examples/|lmstream/|server/|redis/|protocols/|invokers/|engine/|events/|"
    r"batch/|cache/)[\w./\-\[\]*]*[\w\]/*])"
)


def _exists(path: str) -> bool:
    roots = [ROOT, ROOT / "src", ROOT / "src" / "lmstream"]
    if any(p.exists() or glob.glob(str(p)) for p in (root / path for root in roots)):
        return True
    # a test file may live in a folder of tests/ (tests/server/...): a reader finds it by its name
    return path.startswith("tests/test_") and any((ROOT / "tests").rglob(Path(path).name))


def test_the_files_the_docs_name_exist() -> None:
    """A page that names a file (a test, a benchmark, a module) names one that is there: moving a
    module without its docs fails here (mkdocs only checks links)."""
    missing_paths = []
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", page.read_text(encoding="utf-8")):
            missing_paths += [f"{page.name}: {path}" for path in _PATH.findall(span) if not _exists(path)]
    assert not missing_paths, missing_paths


@pytest.mark.parametrize("command", [(), ("serve",), ("worker",), ("batch",)], ids=lambda c: " ".join(("lmstream", *c)))
def test_every_command_line_flag_is_documented(command: tuple[str, ...]) -> None:
    """A newcomer finds every option in the docs: each flag `--help` lists is named on some page."""
    proc = subprocess.run(
        [sys.executable, "-m", "lmstream", *command, "--help"], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", proc.stdout)) - {"--help"}
    assert len(flags) > 3, proc.stdout
    docs = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    undocumented = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![a-z0-9-])", docs))
    assert not undocumented, f"`lmstream {' '.join(command)}` flags no page names: {undocumented}"
