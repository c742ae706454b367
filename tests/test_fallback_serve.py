"""Fallback chains on the command line: `lmstream serve --fallback ...` in its own process with
the real `ai` client and the chat page in Chromium, `--redis --queue` with a worker, a pool by
repeated `--base-url` on `/healthz`, keep-alive comments while the first token is awaited, and
the flags on `lmstream`, `worker` and `batch`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmstream._cli_options import build_invoker
from lmstream.invokers.fallback import FallbackLMInvoker, PooledLMInvoker
from tests.serve_helpers import _free_port
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

PRIMARY = ("Once", " upon", " a", " time", " there", " was")
ANSWER = ("The", " fallback", " answers", ".")
ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_COMPATIBLE_API_KEY": "sk-test"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LMSTREAM_API_KEY"):
        env.pop(k, None)
    return env


class Proc:
    """`lmstream <args>` in its own process, until it answers on `ready_url` (or prints a line)."""

    def __init__(self, args: list[str], ready_url: str | None = None) -> None:
        cmd = [sys.executable, "-c", "import sys; from lmstream.cli import main; sys.exit(main())", *args]
        self.p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if ready_url is None:
            assert self.p.stderr is not None
            assert "lmstream worker" in self.p.stderr.readline()
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.p.poll() is None, self.p.stderr.read() if self.p.stderr else ""
            try:
                if httpx.get(ready_url, timeout=0.5).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(ready_url)

    def stop(self) -> str:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            _, err = self.p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            _, err = self.p.communicate()
        return err or ""


def chain_args(primary: WireServer, fallback: WireServer, policy: str = "restart") -> list[str]:
    return [
        "--model",
        "openai-compatible/primary",
        "--base-url",
        f"{primary.base_url}/v1",
        "--fallback",
        "openai-compatible/fallback",
        "--fallback-base-url",
        f"{fallback.base_url}/v1",
        "--on-midstream-failure",
        policy,
    ]


@pytest.fixture
def upstreams() -> Iterator[tuple[WireServer, WireServer]]:
    """A primary whose every answer breaks after three words, and a fallback that answers."""
    with WireServer(repeat_last=True) as primary, WireServer(repeat_last=True) as fallback:
        primary.enqueue(Script(chunks=fx.openai_chat_text(PRIMARY), drop_after=4, delay_between=0.02))
        fallback.enqueue(Script(chunks=fx.openai_chat_text(ANSWER), delay_between=0.02))
        yield primary, fallback


@pytest.fixture
def served(upstreams: tuple[WireServer, WireServer]) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc(["serve", "--port", str(port), *chain_args(*upstreams)], url + "/healthz")
    try:
        yield url
    finally:
        err = proc.stop()
        assert "Traceback" not in err, err


def node(js_dir: Path, url: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(js_dir / "ai_client.mjs"), url, *args], capture_output=True, text=True, timeout=120, cwd=js_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_serve_fallback_the_ai_client_gets_data_reset_and_a_clean_finish(ai_js_dir, served, upstreams):
    out = node(ai_js_dir, served, "transport", "Tell me a story")
    (run,) = out["runs"]
    assert run["status"] == 200 and run["invalid"] == [] and out["errors"] == []
    chunks = run["chunks"]
    kinds = [c["type"] for c in chunks]
    assert kinds.count("data-reset") == 1 and kinds[-1] == "finish" and "error" not in kinds
    reset = chunks[kinds.index("data-reset")]
    assert reset["data"]["from"] == "openai-compatible/primary" and reset["data"]["to"] == "openai-compatible/fallback"
    assert reset["data"]["discarded"] == len("".join(PRIMARY[:3]))
    # the partial's text part was closed before the reset; the fallback's answer is a new part
    before = {c["id"] for c in chunks[: kinds.index("data-reset")] if c["type"] == "text-start"}
    after = [c for c in chunks[kinds.index("data-reset") :] if c["type"] == "text-start"]
    assert len(before) == 1 and len(after) == 1 and after[0]["id"] not in before
    parts = out["message"]["parts"]
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts[-1] == "".join(ANSWER)
    assert any(p["type"] == "data-reset" for p in parts)  # kept in the message, for a UI to show
    primary, fallback = upstreams
    assert len(primary.requests) == 1 and len(fallback.requests) == 1


def test_serve_fallback_the_page_replaces_the_partial_answer_and_notes_the_switch(page, served):
    page.goto(served + "/")
    box = page.locator("#input")
    box.fill("Tell me a story")
    box.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant .actions button').length >= n", arg=1, timeout=20_000
    )
    answer = page.locator(".msg.assistant").last
    assert answer.locator(".text").all_inner_texts() == ["".join(ANSWER)]  # the partial is gone
    note = answer.locator(".note.reset").inner_text()
    assert "switched to openai-compatible/fallback after openai-compatible/primary failed" in note
    page.reload()  # the stored conversation keeps the same answer and note
    answer = page.locator(".msg.assistant").last
    answer.locator(".note.reset").wait_for()
    assert answer.locator(".text").all_inner_texts() == ["".join(ANSWER)]


def test_serve_redis_queue_a_worker_falls_back_the_same_way(redis_server, upstreams):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    args = chain_args(*upstreams)
    node_proc = Proc(["serve", "--redis", redis_server.url, "--queue", "--port", str(port), *args], url + "/healthz")
    worker = Proc(["worker", "--redis", redis_server.url, "--lease", "2", *args])
    try:
        body = {
            "id": "fallback-chat",
            "trigger": "submit-message",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
        }
        r = httpx.post(url + "/api/chat", json=body, timeout=30)
        assert r.status_code == 200
        chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    finally:
        errs = [worker.stop(), node_proc.stop()]
    kinds = [c["type"] for c in chunks]
    assert kinds.count("data-reset") == 1 and kinds[-1] == "finish" and "error" not in kinds
    i = kinds.index("data-reset")
    after = "".join(c["delta"] for c in chunks[i:] if c["type"] == "text-delta")
    assert after == "".join(ANSWER)
    primary, fallback = upstreams
    assert len(primary.requests) == 1 and len(fallback.requests) == 1
    assert all("Traceback" not in e for e in errs), errs


def test_keepalive_comments_while_the_first_token_is_awaited_and_the_ai_client_ignores_them(ai_js_dir):
    with WireServer() as slow:
        slow.enqueue(Script(chunks=fx.openai_chat_text(ANSWER), delay_first=2.2))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = Proc(
            [
                "serve",
                "--port",
                str(port),
                "--keepalive",
                "0.5",
                "--model",
                "openai-compatible/slow",
                "--base-url",
                f"{slow.base_url}/v1",
            ],
            url + "/healthz",
        )
        try:
            body = {"prompt": "Hi"}
            t0 = time.monotonic()
            comments: list[float] = []
            first_data: float | None = None
            with httpx.stream("POST", url + "/v1/stream", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    if line == ": keep-alive":
                        comments.append(time.monotonic() - t0)
                    elif line.startswith("data:") and '"response"' in line and first_data is None:
                        first_data = time.monotonic() - t0
            assert first_data is not None and first_data >= 2.0
            waiting = [t for t in comments if t < first_data]
            assert len(waiting) >= 3, comments  # every 0.5 s of the 2.2 s silence
            slow.enqueue(Script(chunks=fx.openai_chat_text(ANSWER), delay_first=1.6))
            out = node(ai_js_dir, url, "transport", "Hi")
        finally:
            err = proc.stop()
        assert "Traceback" not in err
    (run,) = out["runs"]
    assert run["invalid"] == [] and out["errors"] == [] and run["chunks"][-1]["type"] == "finish"
    assert [p["text"] for p in out["message"]["parts"] if p["type"] == "text"] == ["".join(ANSWER)]


def test_a_pool_by_repeated_base_url_shows_cooling_deployments_on_healthz():
    with WireServer(repeat_last=True) as bad, WireServer(repeat_last=True) as good:
        bad.enqueue(Script(status=429, headers={"Retry-After": "0"}, body=fx.openai_error_for(429)))
        good.enqueue(Script(chunks=fx.openai_chat_text(ANSWER)))
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = Proc(
            [
                "serve",
                "--port",
                str(port),
                "--model",
                "openai-compatible/m",
                "--base-url",
                f"{bad.base_url}/v1",
                "--base-url",
                f"{good.base_url}/v1",
            ],
            url + "/healthz",
        )
        try:
            assert "cooling" not in httpx.get(url + "/healthz").json()
            for _ in range(4):
                r = httpx.post(url + "/v1/stream", json={"prompt": "Hi"}, timeout=30)
                assert '"type":"done"' in r.text.replace(" ", "")
            health = httpx.get(url + "/healthz").json()
        finally:
            proc.stop()
        assert len(bad.requests) == 1 + 3  # its own retries, then no traffic while it cools down
        assert len(good.requests) == 4
    (cool,) = health["cooling"]
    assert cool["deployment"] == 0 and cool["model"] == "openai-compatible/m" and cool["seconds_left"] > 20
    assert "127.0.0.1" not in json.dumps(health)  # no upstream address


def test_lmstream_question_with_fallback_flags_answers_from_the_fallback(upstreams):
    primary, fallback = upstreams
    proc = subprocess.run(
        [sys.executable, "-m", "lmstream", *chain_args(primary, fallback), "Tell me a story"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    # the terminal shows what streamed; a restart's answer is what follows the partial
    assert proc.stdout.strip().endswith("".join(ANSWER))
    assert len(primary.requests) == 1 and len(fallback.requests) == 1


def test_batch_with_fallback_flags(tmp_path, upstreams):
    primary, fallback = upstreams
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "prompt": "Tell me a story"}) + "\n")
    dst = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "lmstream", "batch", str(src), "-o", str(dst), *chain_args(primary, fallback)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in dst.read_text().splitlines()]
    assert line["text"] == "".join(ANSWER)


def _parse(*argv: str) -> Any:
    from lmstream.cli import _parser

    return _parser().parse_args(list(argv))


def test_flags_build_a_chain_of_a_pool():
    args = _parse(
        "--model",
        "openai-compatible/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--base-url",
        "http://127.0.0.1:10/v1",
        "--fallback",
        "openai-compatible/f",
        "--fallback-base-url",
        "http://127.0.0.1:11/v1",
        "--fallback",
        "local/smollm2-135m",
        "--first-token-timeout",
        "2.5",
        "--on-midstream-failure",
        "continue",
        "--max-tokens",
        "32",
        "q",
    )
    inv = build_invoker(args)
    assert isinstance(inv, FallbackLMInvoker)
    assert inv.first_token_timeout == 2.5 and inv.on_midstream_failure == "continue"
    pool, fb, local = inv.members
    assert isinstance(pool, PooledLMInvoker) and [m.base_url for m in pool.members] == [
        "http://127.0.0.1:9/v1",
        "http://127.0.0.1:10/v1",
    ]
    assert fb.base_url == "http://127.0.0.1:11/v1" and local.model_id == "local/smollm2-135m"
    assert all(m.default_hyperparameters == {"max_tokens": 32} for m in (*pool.members, fb, local))


def test_a_fallback_base_url_without_its_model_is_refused():
    from lmstream.errors import ConfigurationError

    args = _parse(
        "--model", "openai-compatible/m", "--base-url", "http://x/v1", "--fallback-base-url", "http://y/v1", "q"
    )
    with pytest.raises(ConfigurationError, match="--fallback"):
        build_invoker(args)


def _openai_chain(primary: WireServer, fallback: WireServer, policy: str) -> Any:
    from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker

    inv = build_lm_invoker(
        "openai-compatible/primary",
        config={"base_url": f"{primary.base_url}/v1"},
        fallbacks=[build_lm_invoker("openai-compatible/fallback", config={"base_url": f"{fallback.base_url}/v1"})],
        on_midstream_failure=policy,
    )
    return LMRequestProcessor(PromptBuilder(), inv)


def _sse_json(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize("policy", ["restart", "continue"])
def test_the_openai_compatible_api_never_runs_a_partial_and_a_restart_together(upstreams, policy):
    """An OpenAI stream cannot take text back: a restart ends it as failed (naming the flag that
    avoids it), a continuation streams on seamlessly; a non-streamed answer is the answer alone."""
    from tests.serve_helpers import ServedApp

    primary, fallback = upstreams
    with ServedApp(_openai_chain(primary, fallback, policy)) as app:
        body = {"model": "openai-compatible/primary", "messages": [{"role": "user", "content": "Tell me a story"}]}
        streamed = httpx.post(app.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30)
        whole = httpx.post(app.url + "/v1/chat/completions", json=body, timeout=30).json()
    chunks = _sse_json(streamed.text)
    said = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    if policy == "restart":
        assert said == "".join(PRIMARY[:3])  # what had streamed, then the failure
        assert "error" in chunks[-1] and "--on-midstream-failure continue" in chunks[-1]["error"]["message"]
        assert "[DONE]" not in streamed.text
        assert whole["choices"][0]["message"]["content"] == "".join(ANSWER)
    else:
        assert said == "".join(PRIMARY[:3]) + "".join(ANSWER)  # partial, then the continuation
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "data: [DONE]" in streamed.text
        assert whole["choices"][0]["message"]["content"] == "".join(PRIMARY[:3]) + "".join(ANSWER)
