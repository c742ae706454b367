"""The `lmstream` command line, run as a real subprocess on the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

SHORT_ARGS = ["--max-tokens", "12", "--temperature", "0"]
TIMEOUT = 120
SCRIPT = Path(sys.executable).parent / "lmstream"


def run(*args: str, cmd: list[str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [*(cmd or [sys.executable, "-m", "lmstream.cli"]), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        input=stdin,
        env=env,
    )


def assert_clean_stderr(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert "Warning" not in stderr


def test_plain_streaming_prints_the_answer():
    proc = run(*SHORT_ARGS, "Say hello.")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert proc.stdout.endswith("\n")
    assert not proc.stdout.startswith('{"id"')  # plain text, not event JSON
    assert_clean_stderr(proc.stderr)
    assert proc.stderr == ""


def test_events_prints_one_json_line_per_event():
    proc = run("--events", *SHORT_ARGS, "Say hello.")
    assert proc.returncode == 0, proc.stderr
    assert_clean_stderr(proc.stderr)
    lines = proc.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) >= 2
    for ev in events:
        assert {"value", "level", "type", "timestamp"} <= set(ev)
        assert ev["level"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
        assert datetime.fromisoformat(ev["timestamp"]).tzinfo is not None
    assert events[-1]["type"] == "done" and events[-1]["level"] == "INFO"
    responses = [e for e in events[:-1] if e["type"] == "response"]
    assert 1 <= len(responses) <= 12
    assert "".join(e["value"] for e in responses).strip()
    assert events[-1]["metadata"]["usage"]["output_tokens"] == len(responses)
    stamps = [e["timestamp"] for e in events]
    assert [datetime.fromisoformat(s) for s in stamps] == sorted(datetime.fromisoformat(s) for s in stamps)


def test_prompt_from_stdin():
    proc = run(*SHORT_ARGS, "-", stdin="Say hello.\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert_clean_stderr(proc.stderr)


@pytest.mark.skipif(not SCRIPT.exists(), reason="the lmstream console script is not installed in this venv")
def test_console_script_streams():
    proc = run(*SHORT_ARGS, "Say hello.", cmd=[str(SCRIPT)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert_clean_stderr(proc.stderr)


def test_help_mentions_every_option():
    proc = run("--help")
    assert proc.returncode == 0
    for option in ("--model", "--system", "--max-tokens", "--temperature", "--events", "--json", "--base-url"):
        assert option in proc.stdout
    assert "local/smollm2-135m" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "nope/x"], "nope"),
        (["--max-tokens", "0"], "max_tokens"),
        (["--temperature", "5"], "temperature"),
        (["--model", "local/missing.gguf"], "missing.gguf"),
        (["--schema", "{}"], "--schema needs --json"),
        (["--json", "--schema", "[1]"], "must be a JSON object"),
        (["--json", "--schema", "{nope"], "--schema is not JSON"),
        (["--json", "--schema", "@/nonexistent/schema.json"], "cannot read /nonexistent/schema.json"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle):
    proc = run(*args, "Hi")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lmstream: ") and needle in lines[0]
    assert_clean_stderr(proc.stderr)
    assert proc.stdout == ""


LONG = ["--max-tokens", "400", "--temperature", "0", "Write a long story about a dragon and a knight."]
# Interrupting a running generation and exiting at once used to crash the interpreter (SIGSEGV):
# the atexit hook freed the llama.cpp model under the generation thread. It now waits for it.


def popen(*args: str, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lmstream.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw
    )


def test_closed_output_pipe_stops_quietly():
    proc = popen(*LONG)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1)  # the answer started streaming; now the reader goes away (`| head -c 1`)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=TIMEOUT) == 141, err
    assert_clean_stderr(err)


def test_interrupt_mid_answer_exits_130():
    proc = popen(*LONG, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    assert proc.stdout.read(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err.decode()
    assert_clean_stderr(err.decode())


def test_empty_prompt_is_a_usage_error():
    proc = run("", cmd=[sys.executable, "-m", "lmstream.cli"])
    assert proc.returncode == 2
    assert "prompt" in proc.stderr and "Traceback" not in proc.stderr


def test_json_on_the_local_model_is_grammar_constrained():
    """Without the JSON grammar the 135M model answers this in prose and --json fails."""
    proc = run("--json", "--max-tokens", "60", "--temperature", "0", "Describe a cat.")
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), dict)
    assert_clean_stderr(proc.stderr)


def test_the_documented_json_example_answers_with_members_and_a_schema_shapes_it(tmp_path):
    """The help's own example printed `{}` three times out of three: "any object" let the small
    model close at once. The grammar now asks for at least one member, and --schema for the keys."""
    example = run("--json", "--temperature", "0", "Describe Tokyo: its name and country")
    assert example.returncode == 0, example.stderr
    answer = json.loads(example.stdout)
    assert isinstance(answer, dict) and answer, example.stdout
    schema = tmp_path / "city.json"
    schema.write_text(json.dumps({"properties": {"name": {"type": "string"}}, "required": ["name"]}))
    shaped = run("--json", "--schema", f"@{schema}", "--temperature", "0", "Describe Tokyo")
    assert shaped.returncode == 0, shaped.stderr
    assert set(json.loads(shaped.stdout)) == {"name"}


def test_failure_after_streamed_text_starts_on_its_own_line():
    """The answer streamed to stderr (--json) and was cut short: the message is a line of its own."""
    proc = run("--json", "--max-tokens", "3", "--temperature", "0", "Describe Paris as JSON.")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    streamed, _, last = proc.stderr.rstrip("\n").rpartition("\n")
    assert streamed.strip() and last.startswith("lmstream: "), proc.stderr
    assert proc.stdout == ""


def test_stream_cut_mid_answer_ends_the_answer_line_before_the_error():
    from tests.wire import fixtures as fx
    from tests.wire.server import Script, WireServer

    chunks = fx.openai_chat_text(("Here", " are", " some", " ideas", "."))
    with WireServer() as srv:
        srv.enqueue(Script(chunks=chunks, drop_after=3))
        proc = run("--model", "openai-compatible/any", "--base-url", srv.base_url + "/v1", "Ideas?")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("Here") and proc.stdout.endswith("\n") and proc.stdout.count("\n") == 1
    assert proc.stderr.startswith("lmstream: StreamInterruptedError: ") and proc.stderr.count("\n") == 1
