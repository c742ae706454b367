"""The command line as a user meets it: `python -m lmstream`, hints in its own words, a taken
port, and Ctrl-C on `lmstream serve` in the middle of an answer (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_helpers import _free_port
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

SCRIPT = Path(sys.executable).parent / "lmstream"
MODULE = [sys.executable, "-m", "lmstream"]
UPSTREAM = ("--model", "openai-compatible/m", "--base-url")


def _env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **extra}
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LMSTREAM_API_KEY", "OPENAI_COMPATIBLE_API_KEY"):
        e.pop(k, None)
    return e


def _run(cmd: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=_env(), cwd=cwd)


@pytest.mark.skipif(not SCRIPT.exists(), reason="the lmstream console script is not installed in this venv")
@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "--help"], ["worker", "--help"], ["serve", "--host", "0.0.0.0"]]
)
def test_python_dash_m_lmstream_is_the_lmstream_command(args):
    module, script = _run(MODULE, *args), _run([str(SCRIPT)], *args)
    assert module.returncode == script.returncode and module.returncode in (0, 2), module.stderr
    assert (module.stdout, module.stderr) == (script.stdout, script.stderr)
    assert "No module named" not in module.stderr


def test_python_dash_m_lmstream_serve_serves():
    port = _free_port()
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Hi", "!"))))
        proc = subprocess.Popen(
            [*MODULE, "serve", "--port", str(port), *UPSTREAM, f"{wire.base_url}/v1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            _wait_up(proc, f"http://127.0.0.1:{port}")
            r = httpx.post(f"http://127.0.0.1:{port}/v1/stream", json={"prompt": "Hi"}, timeout=30)
            assert r.status_code == 200 and '"value":"Hi"' in r.text.replace(" ", "")
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
    assert "Traceback" not in err


@pytest.mark.parametrize("cmd", [[], ["serve"]])
def test_missing_base_url_hint_speaks_the_command_line(cmd, tmp_path):
    proc = _run(MODULE, *cmd, "--model", "openai-compatible/m", *([] if cmd else ["Hi"]), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--base-url URL" in proc.stderr and "config=" not in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_missing_key_hint_names_the_variable_and_api_key_option(tmp_path):
    proc = _run(MODULE, "--model", "openai-chat/gpt-4o-mini", "Hi", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "OPENAI_API_KEY" in proc.stderr and "--api-key KEY" in proc.stderr
    assert "credentials=" not in proc.stderr and "api_key=" not in proc.stderr


def test_api_key_option_is_sent_to_the_provider(tmp_path):
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Hi",))))
        proc = _run(
            MODULE, "--model", "openai-chat/m", "--base-url", f"{wire.base_url}/v1", "--api-key", "sk-opt", "Hi"
        )
        assert proc.returncode == 0, proc.stderr
        assert wire.requests[0].headers["authorization"] == "Bearer sk-opt"


def test_serve_on_a_taken_port_says_so_before_any_url_and_exits_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _run(MODULE, "serve", "--port", str(port), *UPSTREAM, "http://127.0.0.1:9/v1")
    assert proc.returncode == 2, proc.stderr
    assert "already in use" in proc.stderr and "--port" in proc.stderr
    assert "http://" not in proc.stderr  # the URL of a server that is not running is never printed
    assert "Traceback" not in proc.stderr


def _wait_up(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "lmstream serve did not come up"
        time.sleep(0.1)


def _serve_mid_answer(
    wire: WireServer | None,
) -> tuple[subprocess.Popen[str], list[dict[str, Any]], threading.Thread, Any]:
    """`lmstream serve` with a slow answer streaming to a client (from `wire`, or the embedded
    model when None); returns once text arrived."""
    model: tuple[str, ...] = ()
    if wire is not None:
        wire.enqueue(Script(chunks=fx.openai_chat_text(tuple(f" w{i}" for i in range(100))), delay_between=0.1))
        model = (*UPSTREAM, f"{wire.base_url}/v1")
    port = _free_port()
    proc = subprocess.Popen(
        [*MODULE, "serve", "--port", str(port), *model],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    url = f"http://127.0.0.1:{port}"
    _wait_up(proc, url)
    chunks: list[dict[str, Any]] = []
    first = threading.Event()

    def read() -> None:
        text = [{"type": "text", "text": "Write a long story about dragons."}]
        body = {
            "id": "c",
            "messages": [{"id": "u", "role": "user", "parts": text}],
            "hyperparameters": {"max_tokens": 400},
        }
        with httpx.stream("POST", f"{url}/api/chat", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = line[6:]
                    chunks.append({"type": "[DONE]"} if data == "[DONE]" else json.loads(data))
                    if chunks[-1]["type"] == "text-delta":
                        first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(30), chunks
    return proc, chunks, reader, url


@pytest.mark.parametrize("upstream", ["wire", "embedded"])
def test_ctrl_c_mid_stream_ends_the_answer_with_an_error_and_exits_within_2s(upstream):
    with WireServer() as wire:
        proc, chunks, reader, _ = _serve_mid_answer(wire if upstream == "wire" else None)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
        reader.join(5)
    assert elapsed < 2.0, f"exited after {elapsed:.2f}s"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    errors = [c for c in chunks if c["type"] == "error"]
    assert errors and errors[0]["errorText"] == "the server is shutting down", chunks[-3:]
    assert chunks[-1]["type"] == "[DONE]" and "finish" not in [c["type"] for c in chunks]


def test_second_ctrl_c_exits_at_once():
    with WireServer() as wire:
        proc, _, reader, _ = _serve_mid_answer(wire)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - t0
        reader.join(5)
    assert proc.returncode == 130 and elapsed < 1.0, (proc.returncode, elapsed)
    assert "Traceback" not in err, err


def test_readme_json_example_is_what_the_command_does():
    """The docs' `--json` line (docs/cli.md), run as written (bounded), prints a JSON object on stdout."""
    import re
    import shlex

    readme = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    line = next(m.group(1) for m in re.finditer(r"^lmstream (--json .+?)\s+#(.*)$", readme, re.M))
    comment = re.search(r"^lmstream --json .+?#(.*)$", readme, re.M).group(1)  # type: ignore[union-attr]
    assert "object" in comment
    args = shlex.split(line)
    help_text = _run(MODULE, "--help").stdout
    assert f"lmstream {line}" in help_text  # --help shows the same example
    proc = _run(MODULE, *args, "--max-tokens", "60", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), dict), proc.stdout


def test_cli_usage_line_says_unknown_counts_not_none():
    from lmstream.cli import usage_line

    line = usage_line({"usage": {"input_tokens": None, "output_tokens": None, "cost": None}, "duration": 0.5})
    assert line.startswith("[? tokens in · ? out") and "None" not in line
