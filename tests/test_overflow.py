"""Clear errors for a prompt or an answer that does not fit: one typed error, on every path.

* an over-long prompt -> `ContextOverflowError` (never retried), from each provider's own
  signal, replayed on the wire its real client reads;
* structured or JSON output cut off at `max_tokens` -> `OutputTruncatedError` naming
  `finish_reason="length"` and the limit, with the partial value kept.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmstream import ContextOverflowError, OutputTruncatedError, build_lm_request_processor
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.paths import FAST, PATHS, lmrp_for, wire_of
from tests.wire.providers import KEY, PROVIDERS
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

OPENAI_OVERFLOW = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "130020 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
RESPONSES_OVERFLOW = {
    "error": {
        "message": "Your input exceeds the context window of this model. Please adjust your input and try again.",
        "type": "invalid_request_error",
        "param": "input",
        "code": "context_length_exceeded",
    }
}
ANTHROPIC_OVERFLOW = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "prompt is too long: 210012 tokens > 200000 maximum"},
}
GOOGLE_MESSAGE = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
BEDROCK_OVERFLOW = {
    "__type": "com.amazon.bedrock#ValidationException",
    "message": "Input is too long for requested model.",
}
#: llama.cpp's own server (llama-server)
LLAMA_SERVER_OVERFLOW = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 4310,
        "n_ctx": 4096,
    }
}


def _overflow_reply(name: str) -> tuple[Script, tuple[int | None, int | None]]:
    """(the provider's 400 reply to an over-long prompt, (prompt_tokens, context_window) it says)."""
    wire = wire_of(name)
    if wire == "chat":
        return Script(status=400, body=OPENAI_OVERFLOW), (130020, 128000)
    if wire == "responses":
        return Script(status=400, body=RESPONSES_OVERFLOW), (None, None)
    if wire == "anthropic":
        return Script(status=400, body=ANTHROPIC_OVERFLOW), (210012, 200000)
    if wire == "bedrock":
        return Script(status=400, body=json.dumps(BEDROCK_OVERFLOW).encode()), (None, None)
    return Script(status=400, body=fx.gemini_error_body(400, GOOGLE_MESSAGE)), (1200000, 1048576)


@pytest.mark.parametrize("name", PATHS)
async def test_context_overflow_is_typed_and_never_retried(name):
    script, (prompt, window) = _overflow_reply(name)
    async with WireServer() as srv:
        srv.enqueue(script, script, script)
        events, err = await _run(lmrp_for(name, srv), hyperparameters={"max_tokens": 300})
        assert len(srv.requests) == 1, "a prompt that does not fit is not retried"
    assert isinstance(err, ContextOverflowError), repr(err)
    assert (err.prompt_tokens, err.context_window, err.max_tokens) == (prompt, window, 300)
    assert err.retryable is False
    assert "context window" in str(err) and "shorten the prompt" in str(err)
    assert events[-1].type == "error" and events[-1].metadata["error_type"] == "ContextOverflowError"
    assert KEY not in str(err)


async def test_llama_server_exceed_context_size_error():
    async with WireServer() as srv:
        srv.enqueue(Script(status=400, body=LLAMA_SERVER_OVERFLOW))
        _, err = await _run(lmrp_for("openai-chat", srv))
        assert len(srv.requests) == 1
    assert isinstance(err, ContextOverflowError), repr(err)
    assert (err.prompt_tokens, err.context_window) == (4310, 4096)


async def _run(lmrp: Any, **kw: Any) -> tuple[list[Any], Any]:
    from tests.wire.providers import process

    return await process(lmrp, q="Tokyo?", **kw)


# --------------------------------------------------------------------------- cut at max_tokens

CUT = ('{"city": "Par',)  # the answer the limit cut off


def _sse_rewrite(chunks: list[bytes], event: str, edit: Any) -> list[bytes]:
    out = []
    for c in chunks:
        if f"event: {event}".encode() in c:
            head, _, data = c.partition(b"data: ")
            obj = json.loads(data)
            edit(obj)
            c = head + b"data: " + json.dumps(obj).encode() + b"\n\n"
        out.append(c)
    return out


def _cut(name: str) -> list[bytes]:
    """`name`'s stream of a JSON answer cut off by the output-token limit, in its own words."""
    wire = wire_of(name)
    if wire == "chat":
        return fx.openai_chat_text(CUT, finish_reason="length")
    if wire == "responses":

        def incomplete(obj: dict[str, Any]) -> None:
            obj["type"] = "response.incomplete"
            obj["response"]["status"] = "incomplete"
            obj["response"]["incomplete_details"] = {"reason": "max_output_tokens"}

        chunks = _sse_rewrite(PROVIDERS[name].text(CUT), "response.completed", incomplete)
        return [c.replace(b"event: response.completed", b"event: response.incomplete") for c in chunks]
    if wire == "anthropic":
        return fx.anthropic_text(CUT, stop_reason="max_tokens")
    if wire == "bedrock":
        return es.bedrock_text(CUT, stop_reason="max_tokens")
    return fx.gemini_text(CUT, finish_reason="MAX_TOKENS")


@pytest.mark.parametrize("name", PATHS)
async def test_structured_output_cut_at_max_tokens_says_raise_max_tokens(name):
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=_cut(name)))
        lmrp = lmrp_for(name, srv)
        lmrp.set_response_schema({"type": "object", "properties": {"city": {"type": "string"}}})
        events, err = await _run(lmrp, hyperparameters={"max_tokens": 8})
    assert isinstance(err, OutputTruncatedError), repr(err)
    assert 'finish_reason="length"' in str(err) and "max_tokens=8" in str(err) and "raise max_tokens" in str(err)
    assert err.partial_value == {"city": "Par"} and err.max_tokens == 8 and err.text == "".join(CUT)
    assert events[-1].type == "error"


async def test_json_parser_output_cut_at_max_tokens_keeps_the_partial_value():
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(CUT, finish_reason="length")))
        lmrp = build_lm_request_processor(
            "openai-chat/gpt-4o-mini",
            credentials=KEY,
            config={"base_url": srv.base_url + "/v1"},
            user_template="{q}",
            output_parser_type="json",
            retry_config=FAST,
        )
        _, err = await _run(lmrp, hyperparameters={"max_tokens": 8})
    assert isinstance(err, OutputTruncatedError), repr(err)
    assert err.partial_value == {"city": "Par"} and "max_tokens=8" in str(err)


async def test_local_structured_output_cut_at_max_tokens(local_invoker):
    """The embedded model, grammar-forced to a JSON object, cut by a small max_tokens."""
    from lmstream import LMRequestProcessor, PromptBuilder

    local_invoker.set_response_schema({"type": "object", "properties": {"name": {"type": "string"}}})
    try:
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), local_invoker)
        with pytest.raises(OutputTruncatedError) as info:
            await lmrp.process(q="Give a name as JSON.", hyperparameters={"max_tokens": 3, "temperature": 0.0})
    finally:
        local_invoker.set_response_schema(None)
    err = info.value
    assert err.max_tokens == 3 and 'finish_reason="length"' in str(err)
    assert err.text and err.text.lstrip().startswith("{")
