"""The package stays typed, lint-clean and cheap to import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_ruff_clean():
    proc = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "examples"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean():
    proc = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_does_not_load_sdks_or_llama():
    code = (
        "import sys, lmstream\n"
        "heavy = [m for m in ('openai', 'anthropic', 'google.genai', 'llama_cpp', 'httpx', 'pydantic') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"import lmstream loaded: {proc.stdout}"
