"""Every provider's documented place for each kind of file, asserted on the request body each
official SDK (or lmstream's own HTTP client, for Chat Completions) puts on the wire.

One row per provider and kind: the part lands where that provider's API reference puts it, and
its payload decodes back to the exact bytes attached. A kind a provider does not take is a
`ConfigurationError` naming the kind and models that do, raised before any request is sent.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lmstream import Attachment, ConfigurationError, LangChainLMInvoker
from tests import files_support as f
from tests.wire import fixtures as fx
from tests.wire.providers import KEY, PROVIDERS, TEXT
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import lmrp as _lmrp
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PNG = f.png()
FILES = {
    "png": Attachment.from_bytes(PNG, filename="cat.png"),
    "webp": Attachment.from_bytes(f.WEBP, filename="cat.webp"),
    "pdf": Attachment.from_bytes(f.PDF, filename="report.pdf"),
    "wav": Attachment.from_bytes(f.WAV, filename="hello.wav"),
    "mp3": Attachment.from_bytes(f.MP3, filename="hello.mp3"),
    "text": Attachment.from_bytes(f.TEXT, filename="notes.txt"),
    "image_url": Attachment.from_url("https://images.example/cat.png"),
    "pdf_url": Attachment.from_url("https://docs.example/report.pdf"),
}


def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def _data_url(url: str, mime: str) -> bytes:
    head, _, payload = url.partition(",")
    assert head == f"data:{mime};base64", head
    return _b64(payload)


# ----------------------------------------------------------------------------- where each lands
# each checker gets the last user turn's parts as they appear in the request body, and asserts
# the attachment's part (the one after the question's text part)


def chat(kind: str, part: dict[str, Any]) -> None:
    """OpenAI Chat Completions: image_url, input_audio, file; a text file as a text part."""
    if kind in ("png", "webp"):
        assert set(part) == {"type", "image_url"} and part["type"] == "image_url"
        assert _data_url(part["image_url"]["url"], FILES[kind].mime_type) == FILES[kind].data
    elif kind in ("wav", "mp3"):
        assert part == {"type": "input_audio", "input_audio": {"data": part["input_audio"]["data"], "format": kind}}
        assert _b64(part["input_audio"]["data"]) == FILES[kind].data
    elif kind == "pdf":
        assert part["type"] == "file" and part["file"]["filename"] == "report.pdf"
        assert _data_url(part["file"]["file_data"], "application/pdf") == f.PDF
    elif kind == "text":
        assert part == {"type": "text", "text": "[file notes.txt]\n" + f.TEXT.decode()}
    elif kind == "image_url":
        assert part == {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}}
    else:
        raise AssertionError(kind)


def responses(kind: str, part: dict[str, Any]) -> None:
    """OpenAI Responses: input_image (detail is required by the API), input_file."""
    if kind in ("png", "webp"):
        assert set(part) == {"type", "image_url", "detail"}
        assert (part["type"], part["detail"]) == ("input_image", "auto")
        assert _data_url(part["image_url"], FILES[kind].mime_type) == FILES[kind].data
    elif kind in ("pdf", "text"):
        mime, name = ("application/pdf", "report.pdf") if kind == "pdf" else ("text/plain", "notes.txt")
        assert set(part) == {"type", "filename", "file_data"} and part["type"] == "input_file"
        assert part["filename"] == name and _data_url(part["file_data"], mime) == FILES[kind].data
    elif kind == "image_url":
        assert part == {"type": "input_image", "image_url": "https://images.example/cat.png", "detail": "auto"}
    elif kind == "pdf_url":
        assert part == {"type": "input_file", "file_url": "https://docs.example/report.pdf"}
    else:
        raise AssertionError(kind)


def anthropic(kind: str, part: dict[str, Any]) -> None:
    """Anthropic Messages: image and document blocks, base64 / url / text sources."""
    if kind in ("png", "webp", "pdf"):
        assert part["type"] == ("document" if kind == "pdf" else "image")
        src = part["source"]
        assert (src["type"], src["media_type"]) == ("base64", FILES[kind].mime_type)
        assert _b64(src["data"]) == FILES[kind].data
    elif kind == "text":
        assert part == {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": f.TEXT.decode()},
            "title": "notes.txt",
        }
    elif kind == "image_url":
        assert part == {"type": "image", "source": {"type": "url", "url": "https://images.example/cat.png"}}
    elif kind == "pdf_url":
        assert part == {"type": "document", "source": {"type": "url", "url": "https://docs.example/report.pdf"}}
    else:
        raise AssertionError(kind)


_GEMINI_MIME = {"mp3": "audio/mp3"}


def gemini(kind: str, part: dict[str, Any]) -> None:
    """Gemini / Vertex AI: inlineData (base64) for bytes, fileData (fileUri) for URLs, spelled as
    google-genai itself writes `types.Part.from_bytes` / `from_uri` (outer key camelCase, inner
    snake_case; the API's JSON parser takes both): see test_gemini_parts_match_the_sdks_own."""
    if kind in ("image_url", "pdf_url"):
        a = FILES[kind]
        assert part == {"fileData": {"mime_type": a.mime_type, "file_uri": a.url}}
        return
    mime = _GEMINI_MIME.get(kind, FILES[kind].mime_type)
    assert set(part) == {"inlineData"} and part["inlineData"]["mime_type"] == mime
    # google-genai serialises bytes as URL-safe base64 (its own Part.from_bytes does too)
    assert base64.urlsafe_b64decode(part["inlineData"]["data"]) == FILES[kind].data


def bedrock(kind: str, part: dict[str, Any]) -> None:
    """Bedrock Converse (REST JSON, blobs base64): image and document blocks."""
    if kind in ("png", "webp"):
        assert set(part) == {"image"} and part["image"]["format"] == kind
        assert _b64(part["image"]["source"]["bytes"]) == FILES[kind].data
    elif kind in ("pdf", "text"):
        fmt, name = ("pdf", "report") if kind == "pdf" else ("txt", "notes")
        doc = part["document"]
        assert (doc["format"], doc["name"]) == (fmt, name)
        assert _b64(doc["source"]["bytes"]) == FILES[kind].data
    else:
        raise AssertionError(kind)


WIRES = {"chat": chat, "responses": responses, "anthropic": anthropic, "gemini": gemini, "bedrock": bedrock}

#: kinds each provider row takes; any other kind must raise ConfigurationError
TAKES = {
    "openai-chat": ("png", "webp", "pdf", "wav", "mp3", "text", "image_url"),
    "azure-openai": ("png", "webp", "pdf", "wav", "mp3", "text", "image_url"),
    "litellm": ("png", "webp", "pdf", "wav", "mp3", "text", "image_url"),
    "openai": ("png", "webp", "pdf", "text", "image_url", "pdf_url"),
    "azure-openai-responses": ("png", "webp", "pdf", "text", "image_url", "pdf_url"),
    "anthropic": ("png", "webp", "pdf", "text", "image_url", "pdf_url"),
    "google": ("png", "webp", "pdf", "wav", "mp3", "text", "image_url", "pdf_url"),
    "vertex": ("png", "webp", "pdf", "wav", "mp3", "text", "image_url", "pdf_url"),
    "bedrock": ("png", "webp", "pdf", "text"),
    "xai": ("png", "text", "image_url"),  # xAI reads jpeg and png only
    "ollama": ("png", "webp", "text"),  # base64 images only: Ollama fetches no URL
}
ROWS = [(name, kind) for name in TAKES for kind in FILES]


def _user_parts(wire: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    if wire == "chat":
        return body["messages"][-1]["content"]  # type: ignore[no-any-return]
    if wire == "responses":
        return body["input"][-1]["content"]  # type: ignore[no-any-return]
    if wire in ("anthropic", "bedrock"):
        return body["messages"][-1]["content"]  # type: ignore[no-any-return]
    return body["contents"][-1]["parts"]  # type: ignore[no-any-return]


def test_every_provider_row_is_covered() -> None:
    assert set(TAKES) == set(PROVIDERS)


@pytest.mark.parametrize(("name", "kind"), ROWS, ids=[f"{n}-{k}" for n, k in ROWS])
async def test_attachment_lands_where_the_provider_documents_it(name: str, kind: str) -> None:
    p = PROVIDERS[name]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        lmrp = _lmrp(_invoker(p, srv))
        if kind not in TAKES[name]:
            with pytest.raises(ConfigurationError) as info:
                await lmrp.process(q="What is in this file?", extra_contents=[FILES[kind]])
            msg = str(info.value)
            assert FILES[kind].kind in msg
            assert ("models that can" in msg) != ("does not fetch" in msg)  # either: names who can
            assert srv.requests == []  # refused before anything was sent: never dropped silently
            return
        out = await lmrp.process(q="What is in this file?", extra_contents=[FILES[kind]])
    assert out.text == "".join(TEXT)
    body = srv.requests[0].json
    assert srv.requests[0].path == p.path
    parts = _user_parts(p.wire, body)
    assert len(parts) == 2, parts
    assert "What is in this file?" in str(parts[0]) and "base64" not in str(parts[0])
    WIRES[p.wire](kind, parts[1])


async def test_history_attachments_are_placed_too() -> None:
    """A file in an earlier turn travels in that turn, in place, on every wire."""
    from lmstream import Message

    for name in ("openai", "anthropic", "google", "bedrock"):
        p = PROVIDERS[name]
        async with WireServer() as srv:
            srv.enqueue(Script(chunks=p.text(TEXT)))
            history = [Message.user(["Look:", FILES["png"]]), Message.assistant("A red square.")]
            await _lmrp(_invoker(p, srv)).process(q="Bigger?", history=history)
        body = srv.requests[0].json
        turns = body.get("messages") or body.get("input") or body.get("contents")
        first = turns[0]
        parts = first.get("content") or first.get("parts")
        WIRES[p.wire]("png", parts[1])


async def test_langchain_standard_blocks_reach_openai_through_langchain_openai() -> None:
    """LangChain pass-through: lmstream gives LangChain its standard content blocks, and
    langchain-openai (the official integration) writes OpenAI's parts from them."""
    from langchain_openai import ChatOpenAI

    async with WireServer() as srv:
        srv.enqueue(*(Script(chunks=fx.openai_chat_text(TEXT)) for _ in range(2)))
        model = ChatOpenAI(model="gpt-4o-mini", base_url=srv.base_url + "/v1", api_key=KEY, max_retries=0)
        lmrp = _lmrp(LangChainLMInvoker(model))
        await lmrp.process(q="What is this?", extra_contents=[FILES["png"]])
        await lmrp.process(q="And this?", extra_contents=[FILES["pdf"]])
    image = srv.requests[0].json["messages"][-1]["content"][1]
    assert image["type"] == "image_url" and _data_url(image["image_url"]["url"], "image/png") == PNG
    pdf = srv.requests[1].json["messages"][-1]["content"][1]
    assert pdf["type"] == "file" and _data_url(pdf["file"]["file_data"], "application/pdf") == f.PDF
    assert pdf["file"]["filename"] == "report.pdf"


async def test_gemini_parts_match_the_sdks_own() -> None:
    """lmstream's Gemini parts are byte for byte what google-genai writes for its own typed
    `Part.from_bytes` and `Part.from_uri`."""
    from google.genai import types

    from tests.wire_sdk_support import _genai

    p = PROVIDERS["google"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)), Script(chunks=p.text(TEXT)))
        await _lmrp(_invoker(p, srv)).process(q="Q", extra_contents=[FILES["png"], FILES["pdf_url"]])
        parts = [
            types.Part.from_text(text="Q"),
            types.Part.from_bytes(data=PNG, mime_type="image/png"),
            types.Part.from_uri(file_uri="https://docs.example/report.pdf", mime_type="application/pdf"),
        ]
        stream = await _genai(srv).aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=[types.Content(role="user", parts=parts)]
        )
        async for _ in stream:
            pass
    ours, sdks = (r.json["contents"][-1]["parts"] for r in srv.requests)
    assert ours == sdks
