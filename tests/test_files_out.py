"""Files a model makes: OpenAI Responses' image generation (partial previews, then the image) and
Gemini's inline images become `file` events, `LMOutput.files`, and UI `file` parts."""

from __future__ import annotations

import base64
from typing import Any

from lmstream import EventType
from lmstream.protocols.ui_stream import UIStreamMapper
from tests import files_support as f
from tests.wire import fixtures as fx
from tests.wire.providers import PROVIDERS
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import lmrp as _lmrp
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

PREVIEWS = [f.png(1, 1, (10, 10, 10)), f.png(2, 2, (90, 90, 90))]
FINAL = f.png(4, 4, (200, 40, 40))


def responses_image_stream(**kw: Any) -> list[bytes]:
    return fx.openai_responses_image(PREVIEWS, FINAL, text_deltas=("Here", " it is."), **kw)


async def _responses_events(**kw: Any) -> tuple[list[Any], Any, WireServer]:
    p = PROVIDERS["openai"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=responses_image_stream(**kw)))
        lmrp = _lmrp(_invoker(p, srv))
        events, out = await _process(
            lmrp, q="Draw a red square", hyperparameters={"image_generation": {"partial_images": 2}}
        )
    return events, out, srv


async def test_responses_partial_images_then_the_image_are_file_events_in_one_block() -> None:
    events, out, srv = await _responses_events()
    assert not isinstance(out, BaseException), out
    tools = srv.requests[0].json["tools"]
    assert tools == [{"type": "image_generation", "partial_images": 2}]
    files = [e for e in events if e.type == EventType.FILE]
    assert [e.value.get("partial_index") for e in files] == [0, 1, None]
    assert [base64.b64decode(e.value["data"]) for e in files] == [*PREVIEWS, FINAL]
    assert {e.value["mime_type"] for e in files} == {"image/png"}
    assert len({e.metadata["block_id"] for e in files}) == 1  # one image, updated in place
    assert out.text == "Here it is."
    assert out.files == [{"mime_type": "image/png", "data": base64.b64encode(FINAL).decode()}]
    text_block = next(e.metadata["block_id"] for e in events if e.type == EventType.RESPONSE)
    assert text_block != files[0].metadata["block_id"]


async def test_an_svg_from_the_image_tool_is_labelled_svg_never_png() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    p = PROVIDERS["openai"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_responses_image([], svg, output_format="svg")))
        events, _ = await _process(_lmrp(_invoker(p, srv)), q="Draw", hyperparameters={"image_generation": {}})
    (file,) = [e for e in events if e.type == EventType.FILE]
    assert file.value["mime_type"] == "image/svg+xml"


async def test_gemini_inline_images_are_file_events() -> None:
    p = PROVIDERS["google"]
    image = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(FINAL).decode()}}
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.gemini_stream(("A red", " square:"), extra_parts=[image])))
        lmrp = _lmrp(_invoker(p, srv))
        events, out = await _process(lmrp, q="Draw", hyperparameters={"response_modalities": ["TEXT", "IMAGE"]})
    assert not isinstance(out, BaseException), out
    assert srv.requests[0].json["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]
    (file,) = [e for e in events if e.type == EventType.FILE]
    assert file.value == {"mime_type": "image/png", "data": base64.b64encode(FINAL).decode()}
    assert out.text == "A red square:" and out.files == [file.value]


async def test_ui_stream_maps_previews_to_one_part_replaced_in_place_then_a_file_part() -> None:
    events, _, _ = await _responses_events()
    m = UIStreamMapper("msg_files")
    chunks = [c for e in events for c in m.feed(e.type, e.value, e.metadata)]
    kinds = [c["type"] for c in chunks if c["type"] in ("data-file-preview", "file")]
    assert kinds == ["data-file-preview", "data-file-preview", "file", "data-file-preview"]
    previews = [c for c in chunks if c["type"] == "data-file-preview"]
    assert len({c["id"] for c in previews}) == 1  # the client replaces the part by id: one image
    assert [c["data"].get("index") for c in previews] == [0, 1, None]
    assert previews[-1]["data"] == {"done": True}  # the saved chat keeps no preview's bytes
    (file,) = [c for c in chunks if c["type"] == "file"]
    assert file == {
        "type": "file",
        "url": "data:image/png;base64," + base64.b64encode(FINAL).decode(),
        "mediaType": "image/png",
    }
    assert chunks[-1]["type"] == "finish"


async def test_files_of_every_call_of_the_tool_loop_are_kept() -> None:
    from lmstream import LMRequestProcessor, PromptBuilder
    from lmstream.engine.deltas import FileDelta, FinishDelta, ToolCallDelta
    from lmstream.testing import ScriptedLMInvoker

    def sketch(topic: str) -> str:
        """Make a sketch."""
        return "sketched " + topic

    first = base64.b64encode(PREVIEWS[0]).decode()
    inv = ScriptedLMInvoker(
        [
            [
                FileDelta("a", "image/png", data=first),
                ToolCallDelta(0, "c1", "sketch", '{"topic": "sea"}'),
                FinishDelta("tool_calls"),
            ],
            [FileDelta("b", "image/png", data=base64.b64encode(FINAL).decode()), "Both."],
        ]
    )
    out = await LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, tools=[sketch]).process(q="Draw twice")
    assert [f["data"] for f in out.files] == [first, base64.b64encode(FINAL).decode()]
