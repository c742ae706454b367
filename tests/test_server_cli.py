"""`lmstream serve` as a real subprocess: refuses an open bind without a key, serves a wire
upstream, and with no options serves the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.serve_helpers import _free_port, parse_ui_stream
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmstream.cli", "serve", *args]


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for k in ("OPENAI_API_KEY", "LMSTREAM_API_KEY"):
        e.pop(k, None)
    return e


@contextmanager
def serving(*args: str, timeout: float = 120) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        serve_cmd("--port", str(port), *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "lmstream serve did not come up"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert "Traceback" not in err, err


def test_non_loopback_host_without_key_exits_2_with_the_reason():
    proc = subprocess.run(serve_cmd("--host", "0.0.0.0"), capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 2
    assert "--api-key" in proc.stderr and "--insecure" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_the_options_and_endpoints():
    proc = subprocess.run(serve_cmd("--help"), capture_output=True, text=True, timeout=60, env=env())
    assert proc.returncode == 0
    for word in ("--model", "--base-url", "--system", "--host", "--port", "--api-key", "--insecure", "/api/chat"):
        assert word in proc.stdout


def test_serves_an_openai_compatible_upstream_with_key_and_system_prompt():
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(("Bonjour", "!"))))
        key = "sk-cli-serve-key"
        args = ("--model", "openai-compatible/m", "--base-url", f"{wire.base_url}/v1", "--system", "Be {brief}.")
        with serving(*args, "--api-key", key) as url, httpx.Client(timeout=30) as c:
            body = {"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]}
            assert c.post(f"{url}/api/chat", json=body).status_code == 401
            with c.stream("POST", f"{url}/api/chat", json=body, headers={"authorization": f"Bearer {key}"}) as r:
                chunks = parse_ui_stream(r)
        assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == ["Bonjour", "!"]
        assert wire.requests[0].json["messages"][0] == {"role": "system", "content": "Be {brief}."}


def test_no_options_serves_the_embedded_model():
    with serving() as url, httpx.Client(timeout=120) as c:
        body = {
            "id": "local",
            "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Say hello."}]}],
            "hyperparameters": {"max_tokens": 8, "temperature": 0},
        }
        with c.stream("POST", f"{url}/api/chat", json=body) as r:
            chunks = parse_ui_stream(r)
        with c.stream("POST", f"{url}/v1/stream", json={"prompt": "Hi", "hyperparameters": {"max_tokens": 4}}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [c["delta"] for c in chunks if c["type"] == "text-delta"]
    assert len(deltas) >= 2 and "".join(deltas).strip()
    assert chunks[-2]["type"] == "finish" and chunks[-2]["finishReason"] in ("stop", "length")
    assert json.loads(lines[-1][6:])["type"] == "done"
