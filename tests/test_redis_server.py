"""`lmstream serve --redis URL [--queue]` + `lmstream worker`, each in its own process, against a
real redis-server and a paced upstream (the wire replay server): resume on another node after a
SIGKILL, stop from another node, disconnect does not cancel, 204/410."""

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

pytest.importorskip("redis") if os.environ.get("CI", "").lower() != "true" else None

from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.wire import fixtures  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

WORDS = [f" w{i}" for i in range(40)]
PACE = 0.05
Message = tuple[str | None, str]  # (SSE id, data)


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(WORDS), delay_between=PACE))
        yield srv


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")]),
        "OPENAI_COMPATIBLE_API_KEY": "sk-test",
    }


def _model_args(upstream: WireServer) -> list[str]:
    return ["--model", "openai-compatible/wire-model", "--base-url", f"{upstream.base_url}/v1"]


class Proc:
    def __init__(self, args: list[str], ready_url: str | None = None) -> None:
        cmd = [sys.executable, "-c", "import sys; from lmstream.cli import main; sys.exit(main())", *args]
        self.p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        if ready_url is None:
            assert self.p.stderr is not None
            assert "lmstream worker" in self.p.stderr.readline()
            return
        while time.monotonic() < deadline:
            assert self.p.poll() is None, self.p.stderr.read() if self.p.stderr else ""
            try:  # up: healthy, or degraded only because no worker was started yet
                r = httpx.get(ready_url, timeout=0.5)
                if r.status_code == 200 or (r.status_code == 503 and r.json().get("down") == ["workers"]):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(ready_url)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)
        if self.p.stderr:
            self.p.stderr.close()


def node(redis_url: str, upstream: WireServer, *extra: str) -> tuple[Proc, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc(
        ["serve", "--redis", redis_url, "--port", str(port), *_model_args(upstream), *extra], url + "/healthz"
    ), url


def worker(redis_url: str, upstream: WireServer) -> Proc:
    return Proc(["worker", "--redis", redis_url, "--lease", "2", *_model_args(upstream)])


def body(chat_id: str) -> dict[str, Any]:
    return {
        "id": chat_id,
        "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
    }


def messages(resp: httpx.Response | Iterator[str], until: Any = None) -> list[Message]:
    """SSE messages (id, data) in order; stops after `until(messages)` holds at a message with an id."""
    out: list[Message] = []
    sid: str | None = None
    data: list[str] = []
    for line in resp.iter_lines() if isinstance(resp, httpx.Response) else resp:
        if line.startswith("id: "):
            sid = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            out.append((sid, "\n".join(data)))
            data, last_id, sid = [], sid, None
            if until is not None and last_id is not None and until(out):
                return out
    return out


def text_of(msgs: list[Message]) -> str:
    chunks = [json.loads(d) for _, d in msgs if d != "[DONE]"]
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def n_deltas(msgs: list[Message]) -> int:
    return sum(1 for _, d in msgs if '"text-delta"' in d)


def resume_with_ai_client(js_dir: Path, url: str, chat_id: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(js_dir / "ai_resume.mjs"), url, chat_id], capture_output=True, text=True, timeout=120, cwd=js_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_resume_on_node_b_after_node_a_is_killed_equals_an_uninterrupted_run(
    redis_server: RedisServer, upstream: WireServer, ai_js_dir: Path
) -> None:
    w = worker(redis_server.url, upstream)
    a, a_url = node(redis_server.url, upstream, "--queue")
    b, b_url = node(redis_server.url, upstream, "--queue")
    try:
        with httpx.Client(timeout=20) as c:
            assert c.get(f"{b_url}/api/chat/none-such/stream").status_code == 204
            with c.stream("POST", f"{a_url}/api/chat", json=body("k1")) as r:
                assert r.status_code == 200
                part = messages(r, until=lambda m: n_deltas(m) >= 10)
                a.kill()  # node A dies mid-answer (the answer runs on the worker)
            last_id = part[-1][0]
            assert last_id is not None
            with c.stream("GET", f"{b_url}/api/chat/k1/stream", headers={"Last-Event-ID": last_id}) as r:
                assert r.status_code == 200
                rest = messages(r)
            with c.stream("GET", f"{b_url}/api/chat/k1/stream") as r:  # full replay, as resumeStream() asks
                full = messages(r)
        assert part + rest == full
        ids = [i for i, _ in full if i is not None]
        assert len(ids) == len(set(ids)), "no duplicate"
        assert text_of(full) == "".join(WORDS), "no gap"
        assert full[-1][1] == "[DONE]" and json.loads(full[-2][1])["type"] == "finish"
        start = json.loads(full[0][1])
        assert start["type"] == "start"
        # the real `ai` client's resumeStream() path against node B rebuilds the same message
        out = resume_with_ai_client(ai_js_dir, b_url, "k1")
        assert out["errors"] == []
        msg = out["message"]
        assert msg["id"] == start["messageId"] and msg["role"] == "assistant"
        assert "".join(p["text"] for p in msg["parts"] if p["type"] == "text") == "".join(WORDS)
        assert resume_with_ai_client(ai_js_dir, b_url, "none-such")["message"] is None  # 204
    finally:
        for p in (a, b, w):
            p.kill()


def test_stop_on_node_b_cancels_the_answer_running_on_node_a_within_1s(
    redis_server: RedisServer, upstream: WireServer
) -> None:
    a, a_url = node(redis_server.url, upstream)
    b, b_url = node(redis_server.url, upstream)
    try:
        with httpx.Client(timeout=20) as c, c.stream("POST", f"{a_url}/api/chat", json=body("s1")) as r:
            lines = r.iter_lines()
            part = messages(lines, until=lambda m: n_deltas(m) >= 3)
            t0 = time.monotonic()
            assert c.post(f"{b_url}/api/chat/s1/stop", json={}).json() == {"stopped": True}
            assert upstream.wait_for_sync(lambda s: s.requests[-1].disconnected, 1.0), "upstream still open after 1 s"
            assert time.monotonic() - t0 < 1.0
            rest = messages(lines)
        chunks = [json.loads(d) for _, d in part + rest if d != "[DONE]"]
        assert chunks[-1]["type"] == "abort"
        assert n_deltas(part + rest) < len(WORDS)
    finally:
        a.kill()
        b.kill()


def test_client_leaving_does_not_cancel_with_redis_and_410_for_a_gone_position(
    redis_server: RedisServer, upstream: WireServer
) -> None:
    a, a_url = node(redis_server.url, upstream)
    b, b_url = node(redis_server.url, upstream)
    try:
        with httpx.Client(timeout=20) as c:
            with c.stream("POST", f"{a_url}/api/chat", json=body("d1")) as r:
                messages(r, until=lambda m: n_deltas(m) >= 3)
            # the client left; the answer goes on and any node can replay it
            time.sleep(PACE * len(WORDS) + 0.5)
            assert upstream.requests[-1].completed and not upstream.requests[-1].disconnected
            with c.stream("GET", f"{b_url}/api/chat/d1/stream") as r:
                full = messages(r)
            assert c.post(f"{b_url}/api/chat/d1/stop", json={}).json() == {"stopped": False}  # it finished
            assert text_of(full) == "".join(WORDS)
            gone = c.get(f"{b_url}/api/chat/d1/stream", headers={"Last-Event-ID": "1-0:0"})
            assert gone.status_code == 410 and gone.json()["error"]["type"] == "stream_gone"
            assert c.get(f"{b_url}/api/chat/d1/stream", headers={"Last-Event-ID": "junk"}).status_code == 410
    finally:
        a.kill()
        b.kill()


def test_redis_down_gives_503_never_naming_redis_then_recovers(upstream: WireServer) -> None:
    with RedisServer() as srv:
        a, a_url = node(srv.url, upstream)
        try:
            with httpx.Client(timeout=20) as c:
                srv.stop()
                t0 = time.monotonic()
                r = c.post(f"{a_url}/api/chat", json=body("r1"))
                assert r.status_code == 503 and "chat store is unavailable" in r.json()["error"]["message"]
                assert "redis://" not in r.text and str(srv.port) not in r.text  # never the address (issue 31)
                assert c.get(f"{a_url}/api/chat/r1/stream").status_code == 503
                assert time.monotonic() - t0 < 10
                srv.start()
                with c.stream("POST", f"{a_url}/api/chat", json=body("r2")) as r:
                    assert r.status_code == 200
                    assert text_of(messages(r)) == "".join(WORDS)
        finally:
            a.kill()
