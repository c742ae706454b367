"""The package as users get it: `python -m build` makes an sdist and a wheel (built from the sdist),
`twine check` passes, and the wheel installed into a fresh virtual environment (no editable
install, no system site-packages, no PYTHONPATH) serves its chat page with every file that page
loads, ships `py.typed`, and runs the README's demo.

The fresh environment gets the wheel with its `server,local` dependencies at the versions
requirements/dev.lock pins (uv, with llama-cpp-python's wheel taken from pip's cache, where the
test install has just put it, so it is not built a second time).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?==[^\s\\;]+)")


def clean_env() -> dict[str, str]:
    """This environment without anything that would let the fresh venv see the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=OFF")
    return env


def run(*cmd: str | Path, timeout: float = 600, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=cwd
    )
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools comes from the locked test environment instead of a fresh download
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def test_build_makes_sdist_and_wheel_that_twine_accepts(dist: Path) -> None:
    wheels, sdists = list(dist.glob("lmstream-*.whl")), list(dist.glob("lmstream-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    proc = run(sys.executable, "-m", "twine", "check", "--strict", wheels[0], sdists[0])
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_ships_py_typed_and_the_page(dist: Path) -> None:
    names = set(zipfile.ZipFile(next(dist.glob("*.whl"))).namelist())
    assert "lmstream/py.typed" in names
    static = {Path(n).relative_to("lmstream/server/static").as_posix() for n in names if "/static/" in n}
    on_disk = {
        p.relative_to(ROOT / "src/lmstream/server/static").as_posix()
        for p in (ROOT / "src/lmstream/server/static").rglob("*")
        if p.is_file()
    }
    assert static == on_disk  # every file of the page, the vendored markdown parser included


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and its server,local dependencies at the locked versions."""
    root = tmp_path_factory.mktemp("fresh")
    wheelhouse = root / "wheelhouse"
    pins = [m.group(1) for line in LOCK.read_text().splitlines() if (m := PIN.match(line))]
    llama = next(p for p in pins if p.startswith("llama-cpp-python=="))
    # pip's wheel cache holds the llama-cpp-python the test install built; uv's cache does not
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheelhouse, llama, timeout=1200)
    constraints = root / "constraints.txt"
    constraints.write_text("\n".join(p for p in pins if not p.startswith("lmstream")) + "\n")
    env_dir = root / "venv"
    run(sys.executable, "-m", "uv", "venv", "--python", sys.executable, env_dir)
    wheel = next(dist.glob("*.whl"))
    run(
        sys.executable, "-m", "uv", "pip", "install", "--python", env_dir / "bin" / "python",
        "--find-links", wheelhouse, "-c", constraints, f"lmstream[server,local] @ {wheel.as_uri()}",
    )  # fmt: skip
    return env_dir


def test_fresh_venv_imports_the_installed_wheel(venv: Path) -> None:
    code = "import lmstream, pathlib, sys; p = pathlib.Path(lmstream.__file__).parent; print(p); print(sys.prefix)"
    out = run(venv / "bin" / "python", "-c", code, cwd="/").stdout.split()
    assert Path(out[0]).is_relative_to(venv), out  # the installed copy, not the source tree
    assert (Path(out[0]) / "py.typed").is_file()
    assert "site-packages" in out[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(venv: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(venv / "bin" / "lmstream"), "serve", "--port", str(port)],
        cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base, timeout=30):
                    break
            except OSError:  # refused while it starts (URLError), or a read timeout while it loads
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "lmstream serve did not answer within 180 s"
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


HTML_REF = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"#][^"]*)\"""")
JS_REF = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""")


def test_served_page_loads_every_file_it_references(served: str) -> None:
    """`/` and, followed through HTML and ES-module imports, every script and stylesheet: 200."""
    seen: dict[str, int] = {}
    todo = [served]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        with urllib.request.urlopen(url, timeout=30) as resp:
            seen[url] = resp.status
            body = resp.read().decode("utf-8", "replace")
        refs = HTML_REF.findall(body) if url == served else JS_REF.findall(body) if url.endswith(("js", "mjs")) else []
        todo += [urljoin(url, r) for r in refs if not r.startswith("data:")]
    assert all(status == 200 for status in seen.values()), seen
    names = {u.rsplit("/", 1)[-1] for u in seen}
    assert {"chat.js", "chat.css", "markdown.js", "markdown-it.min.mjs"} <= names, sorted(names)


def test_demo_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """The README's first command's script, run by the fresh venv outside the source tree."""
    proc = run(venv / "bin" / "python", ROOT / "examples" / "guide.py", cwd=tmp_path, timeout=300)
    assert re.search(r"\[\d+ tokens, finish_reason=\w+", proc.stdout), proc.stdout[-2000:]
