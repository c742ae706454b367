"""`lmstream batch` against hostile files (issue 31, items 5-7): an output that is not batch
output, the input given as its own output, a line nested deeper than orjson writes, and an
upstream that echoes the key into its error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.wire.server import Script, WireServer

SECRET = "sk-upstreamSECRET0123456789"


def batch(*args: str, base_url: str = "http://127.0.0.1:9/v1") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.environ.get("PYTHONPATH") or "src",  # the lmstream under test
        "OPENAI_COMPATIBLE_API_KEY": SECRET,
    }
    cmd = [sys.executable, "-m", "lmstream", "batch", *args, "--model", "openai-compatible/m", "--base-url", base_url]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_an_output_that_is_not_batch_output_is_refused_untouched(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": "a", "prompt": "hi"}\n')
    for name, text in (
        ("notes.txt", "my notes\nline two\n"),
        ("notes2.txt", "no newline at the end"),
        ("data.csv", "id,prompt\n1,hello\n"),
        ("other.jsonl", '{"id": "x", "prompt": "an input line, not a result"}\n'),
    ):
        out = tmp_path / name
        out.write_text(text)
        r = batch(str(inp), "-o", str(out))
        assert r.returncode == 2, (name, r.stderr)
        assert "not lmstream batch output" in r.stderr and "nothing was changed" in r.stderr
        assert out.read_text() == text, name


def test_the_input_given_as_its_own_output_is_refused(tmp_path: Path) -> None:
    for name, text in (("data.csv", "id,prompt\n1,hello\n"), ("data.jsonl", '{"id": "a", "prompt": "hi"}\n')):
        inp = tmp_path / name
        inp.write_text(text)
        r = batch(str(inp), "-o", str(inp))
        assert r.returncode == 2, r.stderr
        assert "is the input file" in r.stderr
        assert inp.read_text() == text


def _deep(levels: int) -> object:
    obj: object = 1
    for _ in range(levels):
        obj = [obj]
    return obj


def test_a_line_nested_deeper_than_can_be_written_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    lines = [{"id": "ok", "prompt": "hi"}, {"id": "deep", "prompt": "hi", "metadata": {"m": _deep(600)}}]
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    r = batch(str(inp), "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "line 2" in r.stderr and "nested too deeply" in r.stderr and "nothing was sent" in r.stderr
    assert not out.exists() or out.read_text() == ""


def test_an_upstream_echoing_the_key_never_reaches_the_output_file(tmp_path: Path) -> None:
    echo = {"error": {"message": f"bad request: Authorization: Bearer {SECRET} (key {SECRET})", "type": "x"}}
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(status=400, body=echo))
        inp = tmp_path / "in.jsonl"
        inp.write_text('{"id": "a", "prompt": "hi"}\n')
        out = tmp_path / "out.jsonl"
        r = batch(str(inp), "-o", str(out), base_url=f"{srv.base_url}/v1")
        assert any(SECRET in v for v in srv.requests[0].headers.values())  # the key really went out
    line = json.loads(out.read_text())
    assert line["error"]["type"] == "ProviderError", line
    assert SECRET not in out.read_text() and SECRET not in r.stderr + r.stdout
    assert "[redacted]" in line["error"]["message"]
