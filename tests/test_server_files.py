"""Files on `/api/chat`: the operator's limits (413/415 naming them), one copy per file in the
blob store, later turns carrying `/api/files/<sha256>` instead of the bytes, and Redis holding one
copy across ten turns, a worker and a resume."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pytest

from lmstream.protocols.files import FileLimits
from tests import files_support as f
from tests.serve_helpers import ServedApp, parse_ui_stream, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

PNG = f.png(8, 8)
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
DIGEST = hashlib.sha256(PNG).hexdigest()


def user(text: str, *files: dict[str, Any], mid: str = "u1") -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": text}, *files]}


def file_part(url: str = PNG_URL, media: str = "image/png", name: str = "red.png") -> dict[str, Any]:
    return {"type": "file", "url": url, "mediaType": media, "filename": name}


def chat(url: str, messages: list[dict[str, Any]], chat_id: str = "c1") -> httpx.Response:
    return httpx.post(f"{url}/api/chat", json={"id": chat_id, "messages": messages}, timeout=10)


def sent_image(srv: WireServer, i: int = -1) -> bytes:
    part = srv.requests[i].json["messages"][-1]["content"][1]
    return base64.b64decode(part["image_url"]["url"].split(",", 1)[1])


@pytest.fixture
def upstream() -> Any:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("A", " red", " square."))))
        yield srv


def test_limits_answer_413_and_415_naming_the_limit_or_type(upstream: WireServer) -> None:
    limits = FileLimits(max_file_bytes=400, max_request_bytes=600, max_files=2, types=("image/png", "image/jpeg"))
    with ServedApp(wire_processor(upstream), file_limits=limits) as app:
        big = "data:image/png;base64," + base64.b64encode(f.png(64, 64, (1, 2, 3)) + bytes(400)).decode()
        r = chat(app.url, [user("x", file_part(big))])
        assert r.status_code == 413 and "per file (--max-file-bytes)" in r.json()["error"]["message"]
        r = chat(app.url, [user("x", file_part(), file_part(), file_part())])
        assert r.status_code == 413 and "at most 2 (--max-files)" in r.json()["error"]["message"]
        mid = "data:image/png;base64," + base64.b64encode(f.png(8, 8) + bytes(250)).decode()
        r = chat(app.url, [user("x", file_part(mid), file_part(mid))])
        assert r.status_code == 413 and "per request (--max-request-file-bytes)" in r.json()["error"]["message"]
        html = "data:image/png;base64," + base64.b64encode(f.HTML).decode()
        r = chat(app.url, [user("x", file_part(html))])
        assert r.status_code == 415 and "HTML" in r.json()["error"]["message"]
        pdf = "data:application/pdf;base64," + base64.b64encode(f.PDF).decode()
        r = chat(app.url, [user("x", file_part(pdf, "application/pdf", "r.pdf"))])
        assert r.status_code == 415
        assert "application/pdf are not accepted here (allowed: image/png, image/jpeg)" in r.json()["error"]["message"]
        gone = file_part("/api/files/" + "0" * 64)
        r = chat(app.url, [user("x", gone)])
        assert r.status_code == 410 and "attach it again" in r.json()["error"]["message"]
        assert upstream.requests == []  # nothing refused reached the model
        assert httpx.get(f"{app.url}/api/files").json() == limits.describe()


def test_a_file_is_stored_once_and_later_turns_reference_it(upstream: WireServer) -> None:
    with ServedApp(wire_processor(upstream)) as app:
        r = chat(app.url, [user("What is this?", file_part())])
        assert r.status_code == 200, r.text
        parse_ui_stream(r)
        assert sent_image(upstream) == PNG
        store = app.state.files.store
        assert len(store) == 1
        # the page's next turn names the file by its hash: no base64 in the body
        ref = file_part("/api/files/" + DIGEST)
        history = [
            user("What is this?", ref),
            {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "A red square."}]},
            user("Bigger?", mid="u2"),
        ]
        body = json.dumps({"id": "c1", "messages": history})
        assert "base64" not in body
        r = httpx.post(f"{app.url}/api/chat", content=body, headers={"content-type": "application/json"}, timeout=10)
        assert r.status_code == 200, r.text
        parse_ui_stream(r)
        first_turn = upstream.requests[-1].json["messages"][0]["content"]
        assert base64.b64decode(first_turn[1]["image_url"]["url"].split(",", 1)[1]) == PNG  # the model still sees it
        assert len(store) == 1
        got = httpx.get(f"{app.url}/api/files/{DIGEST}")
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png" and got.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in got.headers["content-security-policy"]
        assert httpx.get(f"{app.url}/api/files/{'1' * 64}").status_code == 404
        assert httpx.get(f"{app.url}/api/files/..%2Fetc").status_code == 404


# ----------------------------------------------------------------------------- Redis

redis_mod = pytest.importorskip("redis")


def test_redis_holds_one_copy_across_ten_turns_a_worker_and_a_resume(upstream: WireServer) -> None:
    import redis as redis_sync

    from tests.redis_server import RedisServer
    from tests.test_redis_server import node, worker

    b64 = base64.b64encode(PNG)
    with RedisServer() as rs:
        w = worker(rs.url, upstream)
        n, url = node(rs.url, upstream, "--queue")
        try:
            history: list[dict[str, Any]] = []
            for turn in range(10):
                part = file_part() if turn == 0 else file_part("/api/files/" + DIGEST)
                history = [*history, user(f"Turn {turn}?", *([part] if turn in (0, 5) else []), mid=f"u{turn}")]
                if turn > 0:  # the page saved the reference in place of the first turn's data URL
                    history[0]["parts"][1] = file_part("/api/files/" + DIGEST)
                r = chat(url, history, chat_id="c-files")
                assert r.status_code == 200, r.text
                parse_ui_stream(r)
                history.append({"id": f"a{turn}", "role": "assistant", "parts": [{"type": "text", "text": "ok"}]})
            resumed = httpx.get(f"{url}/api/chat/c-files/stream", timeout=10)
            assert resumed.status_code in (200, 204)
            assert len(upstream.requests) == 10
            assert all(b64.decode() in json.dumps(r.json) for r in upstream.requests)  # every turn's model saw it
            client = redis_sync.Redis.from_url(rs.url)
            copies, where = 0, []
            for key in client.scan_iter(count=1000):
                kind = client.type(key)
                blobs: list[bytes] = []
                if kind == b"string":
                    blobs = [client.get(key) or b""]
                elif kind == b"stream":
                    blobs = [b"".join(k + v for k, v in fields.items()) for _, fields in client.xrange(key)]
                elif kind == b"hash":
                    blobs = [v for v in client.hvals(key)]
                elif kind == b"list":
                    blobs = client.lrange(key, 0, -1)
                for blob in blobs:
                    found = blob.count(PNG) + blob.count(b64)
                    if found:
                        copies += found
                        where.append(key)
            assert copies == 1 and where == [b"lmstream:blob:" + DIGEST.encode()], where
            ttl = client.ttl(b"lmstream:blob:" + DIGEST.encode())
            assert 0 < ttl <= 3600
            client.close()
        finally:
            n.kill()
            w.kill()


def test_openai_routes_apply_the_same_file_limits_through_the_sdk(upstream: WireServer) -> None:
    import openai

    limits = FileLimits(max_file_bytes=400, max_request_bytes=600, max_files=2, types=("image/png",))
    with ServedApp(wire_processor(upstream), file_limits=limits, max_body_bytes=2000) as app:
        c = openai.OpenAI(base_url=f"{app.url}/v1", api_key="none", max_retries=0, timeout=10)
        model = "openai-compatible/wire-model"

        def ask(*urls: str) -> Any:
            images = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
            parts = [{"type": "text", "text": "What is it?"}, *images]
            return c.chat.completions.create(model=model, messages=[{"role": "user", "content": parts}])

        ok = ask(PNG_URL)  # a file past --max-body-bytes' 2000 bytes of text is still taken
        assert ok.choices[0].message.content == "A red square." and sent_image(upstream) == PNG
        big = "data:image/png;base64," + base64.b64encode(f.png(8, 8) + bytes(500)).decode()
        with pytest.raises(openai.APIStatusError) as e413:
            ask(big)
        assert e413.value.status_code == 413 and "--max-file-bytes" in e413.value.message
        with pytest.raises(openai.APIStatusError) as e413n:
            ask(PNG_URL, PNG_URL, PNG_URL)
        assert e413n.value.status_code == 413 and "--max-files" in e413n.value.message
        jpeg = "data:image/jpeg;base64," + base64.b64encode(f.JPEG).decode()
        with pytest.raises(openai.APIStatusError) as e415:
            ask(jpeg)
        assert e415.value.status_code == 415 and "image/jpeg are not accepted" in e415.value.message
        html = "data:image/png;base64," + base64.b64encode(f.HTML).decode()
        with pytest.raises(openai.APIStatusError) as e415h:
            ask(html)
        assert e415h.value.status_code == 415 and "HTML" in e415h.value.message
        with pytest.raises(openai.APIStatusError) as e413b:
            c.chat.completions.create(model=model, messages=[{"role": "user", "content": "x" * 5000}])
        assert e413b.value.status_code == 413
    assert len(upstream.requests) == 1
