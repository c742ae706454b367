"""The docs' "Use from a React / Next.js app" example (docs/nextjs.md), run for real.

examples/nextjs (route handlers that keep the API key server-side, and the transport, stop and
part readers that app/page.jsx uses) runs under Node with the pinned `ai` 7 and `@ai-sdk/react` 4
(tests/js/package-lock.json) against a real `lmstream serve` process on a wire-replay model:
two turns with hyperparameters and usage; stop (the fetch abort plus POST /stop, with --redis);
a reload resumed with `resumeStream()` (what `useChat({ resume: true })` calls); and a reload
that keeps the chat in localStorage (app/page.jsx: `chatStore`, `reopenChat`), with Redis (the
running answer replaces the stored partial one) and without it (the partial one stays, marked
interrupted, and Regenerate asks again).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_helpers import _free_port
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

EXAMPLE = Path(__file__).parent.parent / "examples" / "nextjs"
KEY = "sk-server-side-only"


class Serve:
    """`lmstream serve` as a user starts it, on the wire model."""

    def __init__(self, wire: WireServer, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = str(Path(sys.executable).with_name("lmstream"))
        cmd = [exe, "serve", "--model", "openai-compatible/wire-model", "--base-url", f"{wire.base_url}/v1"]
        cmd += ["--port", str(self.port), "--api-key", KEY, *extra]
        env = {**os.environ, "OPENAI_COMPATIBLE_API_KEY": "sk-wire-test"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("lmstream serve did not start")
            time.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def example(ai_js_dir: Path) -> Iterator[Path]:
    target = ai_js_dir / "_nextjs_example"  # beside node_modules, so its imports find the pinned packages
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("node_modules", ".next"))
    yield target
    shutil.rmtree(target, ignore_errors=True)


def run(example: Path, serve: Serve, scenario: str) -> dict[str, Any]:
    env = {**os.environ, "LMSTREAM_URL": serve.url, "LMSTREAM_API_KEY": KEY}
    proc = subprocess.run(
        ["node", str(example.parent / "use_chat_example.mjs"), str(example), scenario],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=example.parent,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert "exception" not in out, out["exception"]
    assert all(s["authorization"] is None for s in out["seen"]), "the browser side never holds the key"
    return out


def words(n: int) -> tuple[str, ...]:
    return tuple(f" w{i}" for i in range(n))


def test_two_turns_with_hyperparameters_and_usage(example: Path) -> None:
    with WireServer() as wire:
        wire.enqueue(
            Script(chunks=fx.openai_chat_text(("Temples", " and", " parks."), usage=fx.openai_chat_usage(12, 3))),
            Script(chunks=fx.openai_chat_text(("Ramen", "."), usage=fx.openai_chat_usage(20, 2))),
        )
        serve = Serve(wire)
        try:
            assert httpx.post(serve.url + "/api/chat", json={}).status_code == 401, "the key is needed upstream"
            out = run(example, serve, "turns")
        finally:
            serve.close()
        assert out["status"] == "ready" and out["error"] is None
        assert out["texts"] == [
            ["user", "What is in Tokyo?"],
            ["assistant", "Temples and parks."],
            ["user", "And to eat?"],
            ["assistant", "Ramen."],
        ]
        assert out["usage"]["input_tokens"] == 20 and out["usage"]["output_tokens"] == 2
        body = wire.requests[1].json
        assert body["temperature"] == 0.25 and body["max_tokens"] == 64, "hyperparameters went through the body"
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_stop_ends_the_answer_on_the_server_with_redis(example: Path, redis_server: Any) -> None:
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(words(80)), delay_between=0.1))
        serve = Serve(wire, "--redis", redis_server.url)
        try:
            out = run(example, serve, "stop")
            assert out["stopped"] is True
            assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 3.0), "upstream still open after stop"
        finally:
            serve.close()
        assert out["status"] == "ready"
        assert 0 < len(out["partial"]) < len("".join(words(80)))


def test_a_reload_resumes_the_running_answer_with_redis(example: Path, redis_server: Any) -> None:
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(words(40)), delay_between=0.08))
        serve = Serve(wire, "--redis", redis_server.url)
        try:
            out = run(example, serve, "resume")
        finally:
            serve.close()
        full = "".join(words(40))
        assert out["error"] is None and out["status"] == "ready"
        assert out["before_reload"] and full.startswith(out["before_reload"])
        assert out["after_reload"] == full, "the whole answer, nothing lost and nothing twice"
        assert out["idle_messages"] == 0
        assert len(wire.requests) == 1, "resuming did not ask the model again"


def test_a_reload_keeps_the_chat_without_redis(example: Path) -> None:
    """No Redis: the server stops the answer when the page goes away; the reloaded page keeps the
    stored conversation, the partial answer marked interrupted, and Regenerate answers again."""
    with WireServer() as wire:
        wire.enqueue(
            Script(chunks=fx.openai_chat_text(words(80)), delay_between=0.1),
            Script(chunks=fx.openai_chat_text(("Again", "."), usage=fx.openai_chat_usage(9, 2))),
        )
        serve = Serve(wire)
        try:
            out = run(example, serve, "reload")
            assert wire.wait_for_sync(lambda s: s.requests[0].disconnected, 3.0), "the first answer still runs"
        finally:
            serve.close()
        assert out["pending"] is True and out["reopened"] == "interrupted", out
        assert out["roles"] == ["user", "assistant"]
        full = "".join(words(80))
        assert out["before_reload"] and full.startswith(out["before_reload"])
        assert out["after_reload"] == out["before_reload"], "the reload kept exactly what the page had stored"
        assert out["interrupted"] is True
        assert out["regenerated"] == "Again." and out["roles_after_regenerate"] == ["user", "assistant"]
        assert len(wire.requests) == 2
        assert [m["role"] for m in wire.requests[1].json["messages"]] == ["user"], "regenerate dropped the cut answer"
        assert out["idle"] == "idle"


def test_a_reload_keeps_the_chat_and_resumes_the_answer_with_redis(example: Path, redis_server: Any) -> None:
    with WireServer() as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(words(40)), delay_between=0.08))
        serve = Serve(wire, "--redis", redis_server.url)
        try:
            out = run(example, serve, "reload")
        finally:
            serve.close()
        full = "".join(words(40))
        assert out["reopened"] == "resumed" and out["error"] is None, out
        assert out["roles"] == ["user", "assistant"], "the replay replaced the stored partial answer"
        assert out["before_reload"] and full.startswith(out["before_reload"])
        assert out["after_reload"] == full and out["interrupted"] is False
        assert len(wire.requests) == 1, "resuming did not ask the model again"
