"""The shipped examples run as scripts on the embedded model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_pattern2_collect_full_response():
    script = EXAMPLES / "pattern2_collect_full_response.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    # the script asserts internally that the streamed chunks equal output.text
    first = proc.stdout.splitlines()[0]
    assert first.startswith("collected ") and " tokens, " in first
    n_chars = int(first.split(" tokens, ")[1].split(" characters")[0])
    assert n_chars > 0
    assert len(proc.stdout.split(":\n", 1)[1].rstrip("\n")) == n_chars
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


def _run(name: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    return proc


def test_guide_demo_streams_then_reports():
    out = _run("guide.py").stdout
    text, _, summary = out.rpartition("\n\n[")
    assert text.strip()
    assert " tokens, finish_reason=" in summary and "first token after" in summary


def test_pattern1_realtime_display():
    assert _run("pattern1_realtime_display.py").stdout.strip()


def test_pattern3_conditional_processing():
    out = _run("pattern3_conditional_processing.py").stdout
    assert "[done: " in out and "finish_reason=" in out


def test_custom_provider_example_streams_through_the_public_seam():
    lines = _run("custom_provider.py").stdout.splitlines()
    assert lines[:3] == ["response: 'You '", "response: 'asked: '", "response: 'is '"]
    assert lines[-2] == "done: ''"
    assert lines[-1].startswith("text='You asked: is this streaming? ' usage={'input_tokens': 5, 'output_tokens': 4")
