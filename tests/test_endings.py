"""Truthful endings: a stream the provider never said it finished is an error, on every path.

Each provider is driven through its real client (official SDK, LiteLLM, LangChain's ChatOpenAI,
or lmstream's own HTTP for Chat Completions) against a local server replaying its documented
wire format, cut in that provider's own way: the end marker is there but says no reason
(`[DONE]` with no `finish_reason`, `message_stop` with no `stop_reason`, `messageStop` with no
`stopReason`, Gemini's `FINISH_REASON_UNSPECIFIED`), or, for the Responses API, whose only end
is `response.completed`, missing. Also: missing usage is None, never 0.
"""

from __future__ import annotations

import json

import pytest

from lmstream import StreamInterruptedError
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.paths import PATHS, lmrp_for, wire_of
from tests.wire.providers import PROVIDERS, TEXT
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


def _no_reason(name: str, text: tuple[str, ...] = TEXT) -> list[bytes]:
    """`name`'s stream, ended by its end marker but with no reason given."""
    wire = wire_of(name)
    if wire == "chat":  # what llama_cpp.server sends when it interrupts a request
        return fx.openai_chat_text(text, finish_reason=None)  # type: ignore[arg-type]
    if wire == "responses":  # response.completed is the only end; here it never comes
        return [c for c in PROVIDERS[name].text(text) if b"response.completed" not in c]
    if wire == "anthropic":
        return [c.replace(b'"stop_reason":"end_turn"', b'"stop_reason":null') for c in fx.anthropic_text(text)]
    if wire == "bedrock":
        return [*es.bedrock_text(text, stop_reason=None), es.event("messageStop", {})]
    return fx.gemini_text(text, finish_reason="FINISH_REASON_UNSPECIFIED")


@pytest.mark.parametrize("name", PATHS)
async def test_end_without_a_reason_is_interrupted_with_the_partial_output(name):
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=_no_reason(name)))
        events, err = await _process(lmrp_for(name, srv), q="Tokyo?")
        assert len(srv.requests) == 1  # tokens were streamed: never retried
    assert isinstance(err, StreamInterruptedError), repr(err)
    assert err.partial_output.text == "".join(TEXT) == "".join(e.value for e in events if e.type == "response")
    assert err.partial_output.finish_reason == "error"
    assert events[-1].type == "error" and "done" not in [e.type for e in events]
    if wire_of(name) != "responses":  # LiteLLM says it itself: "ended before a finish_reason was received"
        assert "without saying why" in str(err) or "before a finish_reason" in str(err), str(err)


async def test_done_with_no_finish_reason_and_no_tokens_is_an_error_not_an_empty_answer():
    """llama_cpp.server's interrupted requests: `[DONE]`, no token, no finish_reason."""
    p = PROVIDERS["openai-chat"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text((), finish_reason=None)))  # type: ignore[arg-type]
        _, err = await _process(lmrp_for("openai-chat", srv), q="Tokyo?")
        assert len(srv.requests) == 1 and srv.requests[0].path == p.path
    assert isinstance(err, StreamInterruptedError), repr(err)
    assert err.partial_output.text == ""
    assert "refused the prompt" in str(err) and "--interrupt_requests False" in str(err)


@pytest.mark.parametrize("name", ["openai-chat", "ollama", "xai", "azure-openai"])
async def test_200_with_an_empty_stream_says_the_server_may_have_refused_the_prompt(name):
    """llama_cpp.server answers a prompt longer than its context with 200 and no events."""
    async with WireServer() as srv:
        srv.enqueue(Script(headers={"content-type": "text/event-stream"}, chunks=[]))
        events, err = await _process(lmrp_for(name, srv), q="Tokyo?")
        assert len(srv.requests) == 1  # the same prompt would be refused again: not retried
    assert isinstance(err, StreamInterruptedError), repr(err)
    assert "refused the prompt" in str(err) and "check the server's log" in str(err)
    assert "dropped connection" not in str(err)
    assert events[-1].type == "error"


def _without_usage(name: str) -> list[bytes]:
    wire = wire_of(name)
    if wire == "chat":
        return fx.openai_chat_text(TEXT, include_usage=False)
    if wire == "responses":
        out = []
        for c in PROVIDERS[name].text(TEXT):
            if b"response.completed" in c:
                head, _, data = c.partition(b"data: ")
                obj = json.loads(data)
                obj["response"]["usage"] = None
                c = head + b"data: " + json.dumps(obj).encode() + b"\n\n"
            out.append(c)
        return out
    if wire == "bedrock":
        return es.bedrock_text(TEXT, usage=None)
    out = []
    for c in fx.gemini_text(TEXT):
        obj = json.loads(c[len(b"data: ") :])
        obj.pop("usageMetadata")
        out.append(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")
    return out


#: Anthropic's message_start always carries usage: there is no stream without it
USAGE_PATHS = [n for n in PATHS if wire_of(n) != "anthropic"]


@pytest.mark.parametrize("name", USAGE_PATHS)
async def test_missing_usage_is_none_not_zero(name):
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=_without_usage(name)))
        events, out = await _process(lmrp_for(name, srv), q="Tokyo?")
    assert not isinstance(out, BaseException), repr(out)
    assert out.text == "".join(TEXT) and out.finish_reason == "stop"
    done = events[-1]
    assert done.type == "done" and done.metadata["usage"] == out.usage.to_dict()
    if name == "litellm":  # LiteLLM counts the tokens itself (the model's tokenizer) when none came
        assert out.usage.input_tokens and out.usage.output_tokens, out.usage
        return
    assert out.usage.input_tokens is None and out.usage.output_tokens is None, out.usage
    assert out.usage.total_tokens is None
    assert done.metadata["usage"]["input_tokens"] is None and done.metadata["usage"]["output_tokens"] is None


async def test_usage_of_a_tool_loop_is_unknown_when_one_call_did_not_report_it():
    from tests.wire.providers import get_weather

    calls = [fx.ToolCall("get_weather", json.dumps({"city": "Paris"}), id="c1", fragment=5)]
    async with WireServer() as srv:
        srv.enqueue(
            Script(chunks=fx.openai_chat_tool_calls(calls)),
            Script(chunks=fx.openai_chat_text(("Sunny.",), include_usage=False)),
        )
        lmrp = lmrp_for("openai-chat", srv)
        lmrp.set_tools([get_weather])
        _, out = await _process(lmrp, q="Weather?")
    assert out.text == "Sunny." and out.usage.output_tokens is None


def test_unknown_or_missing_finish_reason_is_never_stop_on_the_ui_stream():
    from lmstream.protocols.ui_stream import UIStreamMapper

    for reason in (None, "something_new", "incomplete"):
        mapper = UIStreamMapper()
        mapper.start()
        chunks = mapper.feed("done", "", {"finish_reason": reason, "usage": {}})
        assert chunks[-1] == {"type": "finish", "finishReason": "other"}, (reason, chunks)


def test_serve_turns_done_without_a_finish_reason_into_an_error_not_a_finish():
    """What the browser got: `finish` with `finishReason: "stop"` for a cut stream."""
    import httpx

    from tests.serve_helpers import ServedApp, parse_ui_stream, wire_processor

    body = {"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}]}
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, finish_reason=None)))  # type: ignore[arg-type]
        with ServedApp(wire_processor(srv)) as app, httpx.Client(timeout=10) as c:
            with c.stream("POST", f"{app.url}/api/chat", json=body) as r:
                chunks = parse_ui_stream(r)
    types = [ch["type"] for ch in chunks]
    assert "finish" not in types and "error" in types, types
    assert "".join(ch["delta"] for ch in chunks if ch["type"] == "text-delta") == "".join(TEXT)


async def test_local_usage_is_counted_by_the_model_tokenizer(local_invoker):
    """The embedded model has its tokenizer at hand: its usage is always counted, never None."""
    out = await local_invoker.invoke("Say hi.", {"max_tokens": 6, "temperature": 0.0})
    prompt = local_invoker.load().model.tokenize("Say hi.", add_special=False)
    assert isinstance(out.usage.input_tokens, int) and out.usage.input_tokens > len(prompt)  # + chat template
    assert isinstance(out.usage.output_tokens, int) and 1 <= out.usage.output_tokens <= 6


async def test_unreported_usage_has_an_unknown_cost_not_a_free_one():
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=_without_usage("openai-chat")))
        _, out = await _process(lmrp_for("openai-chat", srv), q="Tokyo?")  # gpt-4o-mini has a price
    # the tokens stay unknown (as reported); the cost is lmstream's own count, and says so
    assert out.usage.input_tokens is None and out.usage.cost is not None and out.usage.cost > 0, out.usage
    assert out.usage.cost.estimated is True


async def test_traced_interruption_without_usage_records_the_span():
    """Tracing reads the usage of a cut stream: None there must not break the request's end."""
    from tests.otel_support import telemetry

    with telemetry() as tel:
        async with WireServer() as srv:
            srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, finish_reason=None, include_usage=False)))  # type: ignore[arg-type]
            _, err = await _process(lmrp_for("openai-chat", srv), q="Tokyo?")
        spans = [s for s in tel.spans() if s.name.startswith("chat ")]
    assert isinstance(err, StreamInterruptedError), repr(err)
    assert len(spans) == 1 and spans[0].attributes["gen_ai.usage.output_tokens"] == len(TEXT)
