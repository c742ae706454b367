"""One invoker, many processors: an invoker keeps no request's tools or schema, so processors
sharing it each send their own with every model call, even at the same moment. Checked on what
reaches the provider (the wire replay server records every request body)."""

from __future__ import annotations

import asyncio

from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def stock(symbol: str) -> str:
    """A stock's price."""
    return f"{symbol}: 42"


def _sent(srv: WireServer) -> dict[str, tuple[list[str], object]]:
    """What each recorded request sent, by its user message: (tool names, response_format)."""
    out: dict[str, tuple[list[str], object]] = {}
    for r in srv.requests:
        body = r.json
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text = user if isinstance(user, str) else "".join(p.get("text", "") for p in user)
        names = [t["function"]["name"] for t in body.get("tools") or []]
        out[text] = (names, body.get("response_format"))
    return out


async def test_processors_sharing_an_invoker_each_send_only_their_own_tools_at_once():
    async with WireServer() as srv:
        answer = fx.openai_chat_text(("a", "b", "c", "d", "e"))
        srv.enqueue(*(Script(chunks=answer, delay_between=0.03) for _ in range(3)))
        invoker = build_lm_invoker(
            "openai-compatible/wire-model", credentials="sk-wire-test", config={"base_url": f"{srv.base_url}/v1"}
        )
        builder = PromptBuilder(user_template="{q}")
        with_weather = LMRequestProcessor(builder, invoker, tools=[weather])
        with_stock = LMRequestProcessor(builder, invoker, tools=[stock])
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
        plain = LMRequestProcessor(builder, invoker, response_schema=schema)
        try:
            outs = await asyncio.wait_for(
                asyncio.gather(
                    with_weather.process(q="A"),
                    with_stock.process(q="B"),
                    plain.process(q="C", auto_execute_tools=False),
                    return_exceptions=True,
                ),
                20,
            )
        finally:
            await invoker.aclose()
        assert [o.text for o in outs[:2]] == ["abcde", "abcde"], outs  # type: ignore[union-attr]
        # gathered: the three calls ran at once (each answer takes ~0.12 s on the wire)
        assert len(srv.requests) == 3
        sent = _sent(srv)
    assert sent["A"] == (["weather"], None)
    assert sent["B"] == (["stock"], None)
    names, response_format = sent["C"]
    assert names == [] and isinstance(response_format, dict), sent["C"]
    # the invoker itself was never given a request's tools or schema
    assert invoker.tools == [] and invoker.response_schema is None
    assert [t.name for t in with_weather.tools] == ["weather"] and [t.name for t in with_stock.tools] == ["stock"]


async def test_set_tools_on_one_processor_leaves_the_other_alone():
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("ok",))), Script(chunks=fx.openai_chat_text(("ok",))))
        invoker = build_lm_invoker(
            "openai-compatible/wire-model", credentials="sk-wire-test", config={"base_url": f"{srv.base_url}/v1"}
        )
        builder = PromptBuilder(user_template="{q}")
        first = LMRequestProcessor(builder, invoker, tools=[weather])
        second = LMRequestProcessor(builder, invoker)
        second.set_tools([stock])
        first.clear_tools()
        try:
            await first.process(q="A")
            await second.process(q="B")
        finally:
            await invoker.aclose()
        sent = _sent(srv)
    assert sent["A"][0] == [] and sent["B"][0] == ["stock"]
