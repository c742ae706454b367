"""`Attachment`: constructors, types read from the bytes (never from a label), and files reaching a
model from the library, the sync API, history messages, batch lines and the CLI's `--file`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lmstream import (
    Attachment,
    AttachmentError,
    ConfigurationError,
    LMRequestProcessor,
    Message,
    PromptBuilder,
    build_lm_invoker,
)
from lmstream.batch import read_requests, run_batch
from tests import files_support as f
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

KEY = "sk-wire-attach"

# =========================================================================== sniffing


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (f.png(), "image/png"),
        (f.JPEG, "image/jpeg"),
        (f.GIF, "image/gif"),
        (f.WEBP, "image/webp"),
        (f.PDF, "application/pdf"),
        (f.WAV, "audio/wav"),
        (f.MP3, "audio/mpeg"),
        (b"\xff\xfb\x90\x00" + bytes(40), "audio/mpeg"),  # a bare MPEG frame, no ID3 tag
        (f.TEXT, "text/plain"),
    ],
)
def test_type_comes_from_the_bytes_whatever_the_label(data: bytes, mime: str) -> None:
    for label in (None, "text/plain", "image/png", "application/octet-stream"):
        assert Attachment.from_bytes(data, label).mime_type == mime or (
            mime == "text/plain" and label == "text/plain"
        )
    assert Attachment(data, "").mime_type == mime


def test_a_png_labelled_text_plain_is_a_png() -> None:
    a = Attachment(f.png(), "text/plain", "notes.txt")
    assert a.mime_type == "image/png" and a.kind == "image"


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (f.HTML, "HTML/SVG/XML markup"),
        (f.SVG, "HTML/SVG/XML markup"),
        (b"  \n<html><body>hi</body></html>", "HTML/SVG/XML markup"),
        (f.ELF, "an executable (ELF)"),
        (b"MZ\x90\x00\x03" + bytes(40), "an executable (Windows PE)"),
        (b"PK\x03\x04" + bytes(30), "a ZIP archive"),
        (bytes(range(256)), "binary data of no supported type"),
        (b"", "empty"),
    ],
)
def test_html_svg_executables_and_unknown_bytes_labelled_png_are_refused(data: bytes, what: str) -> None:
    with pytest.raises(AttachmentError) as info:
        Attachment(data, "image/png", "cat.png")
    msg = str(info.value)
    assert what in msg and "'cat.png'" in msg and "labelled image/png" in msg
    assert "png, jpeg, gif, webp" in msg  # says what would be accepted
    assert info.value.detected == what and info.value.label == "image/png"
    assert isinstance(info.value, ValueError)


def test_text_labels_keep_their_subtype_only_when_the_bytes_are_text() -> None:
    assert Attachment(b"# Title\n", "text/markdown").mime_type == "text/markdown"
    assert Attachment(b"a,b\n1,2\n", "text/csv; charset=utf-8").mime_type == "text/csv"
    assert Attachment(b"a,b\n", "text/html").mime_type == "text/plain"  # a label cannot make text HTML
    assert Attachment(f.PDF, "text/markdown").mime_type == "application/pdf"


# =========================================================================== constructors


def test_from_path_reads_bytes_name_and_type(tmp_path: Path) -> None:
    p = tmp_path / "photo.txt"  # the name lies; the bytes do not
    p.write_bytes(f.png())
    a = Attachment.from_path(p)
    assert (a.data, a.mime_type, a.filename, a.url) == (f.png(), "image/png", "photo.txt", None)
    assert Attachment.from_path(str(p)).data == f.png()
    with pytest.raises(FileNotFoundError):
        Attachment.from_path(tmp_path / "missing.png")


def test_from_data_url_round_trips_and_checks() -> None:
    a = Attachment.from_bytes(f.PDF, filename="r.pdf")
    b = Attachment.from_data_url(a.data_url(), filename="r.pdf")
    assert b.data == f.PDF and b.mime_type == "application/pdf"
    assert a.data_url() == "data:application/pdf;base64," + base64.b64encode(f.PDF).decode()
    lie = "data:image/png;base64," + base64.b64encode(f.HTML).decode()
    with pytest.raises(AttachmentError, match="HTML"):
        Attachment.from_data_url(lie)
    with pytest.raises(AttachmentError, match="base64"):
        Attachment.from_data_url("data:image/png,rawtext")
    with pytest.raises(AttachmentError, match="valid base64"):
        Attachment.from_data_url("data:image/png;base64,@@@")


def test_from_url_keeps_the_url_and_never_fetches() -> None:
    a = Attachment.from_url("https://example.com/a/cat.JPG?size=large#x")
    assert (a.url, a.data, a.mime_type, a.filename) == (
        "https://example.com/a/cat.JPG?size=large#x",
        b"",
        "image/jpeg",
        "cat.JPG",
    )
    assert a.data_url() == a.url
    assert Attachment.from_url("gs://bucket/report.pdf").mime_type == "application/pdf"
    assert Attachment.from_url("https://x.test/blob", mime_type="audio/mp3").mime_type == "audio/mpeg"
    with pytest.raises(AttachmentError, match="mime_type="):
        Attachment.from_url("https://x.test/blob")
    with pytest.raises(AttachmentError, match="mime_type="):
        Attachment.from_url("https://x.test/page.html")
    with pytest.raises(AttachmentError, match=r"http\(s\)"):
        Attachment.from_url("file:///etc/passwd")
    assert Attachment.from_url("data:text/plain;base64," + base64.b64encode(b"hi").decode()).data == b"hi"


def test_repr_never_prints_the_bytes() -> None:
    r = repr(Attachment.from_bytes(f.png(), filename="a.png"))
    assert r.startswith("Attachment(mime_type='image/png', filename='a.png', size=") and "PNG" not in r


# =========================================================================== into a model


def _chat_lmrp(srv: WireServer, user_template: str = "{q}") -> LMRequestProcessor[Any]:
    inv = build_lm_invoker("openai-chat/gpt-4o-mini", credentials=KEY, config={"base_url": srv.base_url + "/v1"})
    return LMRequestProcessor(PromptBuilder(user_template=user_template), inv)


def _user_parts(srv: WireServer, i: int = -1) -> list[list[Any]]:
    msgs = srv.requests[i].json["messages"]
    return [m["content"] for m in msgs if m["role"] == "user"]


async def test_extra_contents_and_history_messages_reach_the_wire() -> None:
    png, pdf = f.png(), Attachment.from_bytes(f.PDF, filename="r.pdf")
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("ok",))))
        history = [
            Message.user(["What is this?", Attachment.from_bytes(png)]),
            Message.assistant("A red square."),
            {"role": "user", "content": ["and this one?", pdf]},  # a plain dict works too
            {"role": "assistant", "content": "A report."},
        ]
        out = await _chat_lmrp(srv).process(q="Compare them", history=history, extra_contents=[pdf])
    assert out.text == "ok"
    first, second, last = _user_parts(srv)
    assert first[0] == {"type": "text", "text": "What is this?"}
    assert base64.b64decode(first[1]["image_url"]["url"].split(",", 1)[1]) == png
    assert second[1]["file"]["filename"] == "r.pdf"
    assert last[0] == {"type": "text", "text": "Compare them"}
    assert base64.b64decode(last[1]["file"]["file_data"].split(",", 1)[1]) == f.PDF


def test_sync_api_carries_attachments() -> None:
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("seen",))))
        out = _chat_lmrp(srv).process_sync(q="Describe", extra_contents=[Attachment.from_bytes(f.png())])
    assert out.text == "seen"
    part = _user_parts(srv)[0][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")


async def test_embedded_model_says_it_reads_text_only() -> None:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), build_lm_invoker("local/smollm2-135m"))
    with pytest.raises(ConfigurationError) as info:
        await lmrp.process(q="What is this?", extra_contents=[Attachment.from_bytes(f.png(), filename="cat.png")])
    msg = str(info.value)
    assert "text only" in msg and "image" in msg and "cat.png" in msg
    assert "openai/" in msg and "anthropic/" in msg and "google/" in msg  # names models that can


async def test_embedded_model_reads_a_text_file() -> None:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), build_lm_invoker("local/smollm2-135m"))
    note = Attachment.from_bytes(f.TEXT, filename="notes.txt")
    out = await lmrp.process(q="Summarise the file.", extra_contents=[note], hyperparameters={"max_tokens": 4})
    assert out.usage.input_tokens and out.usage.input_tokens > 20  # the file's text was in the prompt


# =========================================================================== batch and CLI


def test_batch_lines_take_files_relative_to_the_input(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(f.png())
    (tmp_path / "in.jsonl").write_text(
        json.dumps({"id": "1", "prompt": "What is it?", "files": ["img/a.png"]})
        + "\n"
        + json.dumps({"id": "2", "prompt": "And this?", "files": [Attachment.from_bytes(f.PDF).data_url()]})
        + "\n"
    )
    reqs = read_requests(tmp_path / "in.jsonl")
    assert [a.mime_type for r in reqs for a in r.files or []] == ["image/png", "application/pdf"]
    (tmp_path / "bad.jsonl").write_text(
        json.dumps({"prompt": "x", "files": ["img/missing.png"]})
        + "\n"
        + json.dumps({"prompt": "y", "files": ["evil.png"]})
        + "\n"
    )
    (tmp_path / "evil.png").write_bytes(f.HTML)
    with pytest.raises(ConfigurationError) as info:
        read_requests(tmp_path / "bad.jsonl")
    assert "line 1: files[0]" in str(info.value) and "line 2: files[0]" in str(info.value)
    assert "HTML" in str(info.value)

    with WireServer() as srv:
        srv.enqueue(*(Script(chunks=fx.openai_chat_text(("ok",))) for _ in range(2)))
        import asyncio

        results: list[Any] = []
        asyncio.run(run_batch(_chat_lmrp(srv), reqs, concurrency=1, on_result=results.append))
    assert sorted(r.id for r in results) == ["1", "2"] and all(r.error is None for r in results)
    kinds = sorted(p["type"] for r in srv.requests for m in r.json["messages"] for p in m["content"])
    assert kinds == ["file", "image_url", "text", "text"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "lmstream.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_file_flag_sends_each_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(f.png())
    (tmp_path / "r.pdf").write_bytes(f.PDF)
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("A", " red", " square"))))
        proc = _cli(
            "--model", "openai-compatible/vision", "--base-url", srv.base_url + "/v1",
            "--file", str(tmp_path / "a.png"), "--file", str(tmp_path / "r.pdf"), "What are these?",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "A red square"
    parts = srv.requests[0].json["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What are these?"}
    assert base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1]) == f.png()
    assert parts[2]["file"]["filename"] == "r.pdf"


def test_cli_file_errors_exit_2_before_any_request(tmp_path: Path) -> None:
    (tmp_path / "page.png").write_bytes(f.HTML)
    proc = _cli("--file", str(tmp_path / "page.png"), "hi")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("lmstream: error: --file ") and "HTML" in proc.stderr
    proc = _cli("--file", str(tmp_path / "nope.png"), "hi")
    assert proc.returncode == 2 and "No such file" in proc.stderr
    (tmp_path / "cat.png").write_bytes(f.png())
    proc = _cli("--file", str(tmp_path / "cat.png"), "--max-tokens", "4", "hi")  # the embedded model
    assert proc.returncode == 2 and "text only" in proc.stderr and "image" in proc.stderr
    assert "--file" in _cli("--help").stdout
