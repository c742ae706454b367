"""Cost on every answer: `usage.cost` in USD from genai-prices, None when unknown, 0 locally;
`budget=` stops new requests once spent, streamed requests included."""

from __future__ import annotations

import pickle
from typing import Any

import genai_prices
import pytest

from lmstream import (
    Budget,
    BudgetExceededError,
    ConfigurationError,
    Cost,
    LMRequestProcessor,
    PromptBuilder,
    build_lm_invoker,
)
from lmstream.cli import main as cli_main
from tests.wire import fixtures as fx
from tests.wire.providers import KEY, PROVIDERS, TEXT, invoker, process
from tests.wire.server import Script, WireServer

#: the wire fixtures report 11 tokens in and one per text delta out
PRICED = {"openai-chat": "openai", "openai": "openai", "anthropic": "anthropic", "google": "google"}


def _expected(provider_id: str, model: str, **usage: int) -> Any:
    return genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider_id)


@pytest.mark.parametrize("name", list(PRICED))
async def test_usage_carries_the_genai_prices_cost(name: str) -> None:
    p = PROVIDERS[name]
    model = p.model_id.split("/", 1)[1]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)))
        inv = invoker(p, srv)
        events, out = await process(_lmrp(inv), q="Tokyo?")
        await inv.aclose()
    want = _expected(PRICED[name], model, input_tokens=11, output_tokens=len(TEXT))
    cost = out.usage.cost
    assert isinstance(cost, Cost) and cost > 0
    assert cost.total == pytest.approx(float(want.total_price), rel=1e-9)
    assert cost.input == pytest.approx(float(want.input_price))
    assert cost.output == pytest.approx(float(want.output_price))
    done = events[-1]
    assert done.type == "done"
    assert done.metadata["usage"]["cost"] == {
        "total": float(cost),
        "input": cost.input,
        "output": cost.output,
        "cache_read": 0.0,
        "estimated": False,
    }


async def test_cached_input_is_priced_at_the_cache_rate() -> None:
    p = PROVIDERS["openai-chat"]
    usage = fx.openai_chat_usage(1000, 10, cached_tokens=800)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, usage=usage)))
        inv = invoker(p, srv)
        _, out = await process(_lmrp(inv), q="Tokyo?")
        await inv.aclose()
    cost = out.usage.cost
    want = _expected("openai", "gpt-4o-mini", input_tokens=1000, cache_read_tokens=800, output_tokens=10)
    uncached = _expected("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=10)
    assert cost is not None and cost.total == pytest.approx(float(want.total_price))
    assert cost.total < float(uncached.total_price)
    only_cache = _expected("openai", "gpt-4o-mini", input_tokens=800, cache_read_tokens=800)
    assert cost.cache_read == pytest.approx(float(only_cache.input_price)) and 0 < cost.cache_read < cost.input


async def test_unknown_price_is_none_not_zero() -> None:
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, usage=fx.openai_chat_usage(11, 5))))
        inv = build_lm_invoker("openai-compatible/my-finetune", config={"base_url": srv.base_url + "/v1"})
        events, out = await process(_lmrp(inv), q="Tokyo?")
        await inv.aclose()
    assert out.usage.input_tokens == 11 and out.usage.cost is None
    assert events[-1].metadata["usage"]["cost"] is None


def test_the_embedded_model_costs_zero(local_invoker: Any) -> None:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), local_invoker)
    out = lmrp.process_sync(q="Hi", hyperparameters={"max_tokens": 3})
    assert out.usage.output_tokens > 0
    assert out.usage.cost == 0 and isinstance(out.usage.cost, Cost) and out.usage.cost.total == 0.0


def test_cost_is_a_float_with_parts_that_adds_and_pickles() -> None:
    a = Cost(0.003, input=0.001, output=0.002)
    b = Cost(0.0005, input=0.0005, cache_read=0.0001)
    c = a + b
    assert isinstance(c, Cost) and c == pytest.approx(0.0035)
    assert (c.input, c.output, c.cache_read) == pytest.approx((0.0015, 0.002, 0.0001))
    assert f"{c:.4f}" == "0.0035" and float(c) * 2 == pytest.approx(0.007)
    back = pickle.loads(pickle.dumps(c))
    assert back == c and back.cache_read == c.cache_read


async def test_tool_loop_usage_sums_the_cost_of_every_call() -> None:
    p = PROVIDERS["openai-chat"]
    call = fx.openai_chat_tool_calls(
        [fx.ToolCall("get_weather", '{"city": "Paris"}', id="c1")], usage=fx.openai_chat_usage(40, 7)
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=call), Script(chunks=fx.openai_chat_text(TEXT, usage=fx.openai_chat_usage(30, 5))))
        inv = invoker(p, srv)
        lmrp = _lmrp(inv)
        lmrp.set_tools([_get_weather])
        _, out = await process(lmrp, q="Weather?")
        await inv.aclose()
    assert len(srv.requests) == 2
    one = _expected("openai", "gpt-4o-mini", input_tokens=40, output_tokens=7)
    two = _expected("openai", "gpt-4o-mini", input_tokens=30, output_tokens=5)
    assert out.usage.cost == pytest.approx(float(one.total_price + two.total_price))


def _get_weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    return {"city": city, "temp": 21}


# ----------------------------------------------------------------------------- budget


async def test_budget_stops_new_requests_once_spent_streamed_ones_included() -> None:
    p = PROVIDERS["openai-chat"]
    big = fx.openai_chat_usage(100_000, 1_000)  # about $0.016 on gpt-4o-mini
    async with WireServer() as srv:
        srv.enqueue(*[Script(chunks=fx.openai_chat_text(TEXT, usage=big)) for _ in range(3)])
        inv = invoker(p, srv)
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, budget=0.02)
        async with lmrp.stream(q="one") as stream:  # a streamed request is charged like any other
            texts = [e.value async for e in stream if e.type == "response"]
        first = await stream.result()
        assert "".join(texts) == "".join(TEXT) and first.usage.cost is not None
        assert lmrp.budget is not None and lmrp.budget.spent == pytest.approx(float(first.usage.cost))
        await lmrp.process(q="two")  # $0.016 spent of $0.02: still allowed
        with pytest.raises(BudgetExceededError) as err:
            await lmrp.process(q="three")
        await inv.aclose()
    assert len(srv.requests) == 2, "the refused request must not reach the provider"
    assert err.value.limit == 0.02 and err.value.spent > 0.02
    assert "budget" in str(err.value)


async def test_one_budget_shared_by_two_processors() -> None:
    p = PROVIDERS["openai-chat"]
    big = fx.openai_chat_usage(200_000, 0)  # $0.03
    async with WireServer() as srv:
        srv.enqueue(*[Script(chunks=fx.openai_chat_text(TEXT, usage=big)) for _ in range(2)])
        inv = invoker(p, srv)
        shared = Budget(0.01)
        a = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, budget=shared)
        b = LMRequestProcessor(PromptBuilder(system_template="other", user_template="{q}"), inv, budget=shared)
        await a.process(q="one")
        with pytest.raises(BudgetExceededError):
            await b.process(q="two")
        await inv.aclose()
    assert len(srv.requests) == 1 and shared.remaining == 0


async def test_budget_without_a_known_price_is_refused_clearly() -> None:
    async with WireServer() as srv:
        inv = build_lm_invoker("openai-compatible/my-finetune", config={"base_url": srv.base_url + "/v1"})
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, budget=1.0)
        with pytest.raises(ConfigurationError, match="budget= needs prices"):
            await lmrp.process(q="hi")
        await inv.aclose()
    assert srv.requests == []


def test_cli_usage_line_shows_the_cost(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, usage=fx.openai_chat_usage(11, 5))))
        code = cli_main(["--usage", "--model", "openai-chat/gpt-4o-mini", "--base-url", srv.base_url + "/v1", "Hi"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == "".join(TEXT)
    want = _expected("openai", "gpt-4o-mini", input_tokens=11, output_tokens=5)
    assert f"${float(want.total_price):.6f}" in err and "11 tokens in" in err and "5 out" in err


def _lmrp(inv: Any) -> LMRequestProcessor[Any]:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{q}"), inv)


async def test_a_budget_counts_calls_whose_server_sends_no_usage() -> None:
    """llama_cpp.server behind a priced id (`openai-chat/gpt-4o-mini` with `base_url`) reports no
    usage: the budget used to charge nothing and never stopped. The call is priced on lmstream's
    own count, and the cost says it was estimated."""
    p = PROVIDERS["openai-chat"]
    long_q = "Explain the history of Tokyo in detail. " * 2_000  # about 27k estimated prompt tokens
    async with WireServer() as srv:
        srv.enqueue(*[Script(chunks=fx.openai_chat_text(TEXT, include_usage=False)) for _ in range(4)])
        inv = invoker(p, srv)
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, budget=0.0075)
        events, first = await process(lmrp, q=long_q)
        cost = first.usage.cost
        assert first.usage.input_tokens is None and first.usage.output_tokens is None  # as reported
        assert cost is not None and cost > 0 and cost.estimated is True
        assert events[-1].metadata["usage"]["cost"]["estimated"] is True
        prompt_tokens = inv.count_tokens(inv._prepare([{"role": "user", "content": long_q}], None)[0])
        assert prompt_tokens > 20_000
        want = _expected("openai", "gpt-4o-mini", input_tokens=prompt_tokens, output_tokens=1)
        assert cost.input == pytest.approx(float(want.input_price))
        assert lmrp.budget is not None and lmrp.budget.spent == pytest.approx(float(cost))
        await lmrp.process(q=long_q)  # about $0.004 each: the second still fits $0.0075
        with pytest.raises(BudgetExceededError):
            await lmrp.process(q=long_q)
        await inv.aclose()
    assert len(srv.requests) == 2, "the budget must stop requests though no usage came back"


def test_an_estimated_cost_says_so_through_sums_pickles_and_dicts() -> None:
    a = Cost(0.5, input=0.4, output=0.1, estimated=True)
    b = Cost(0.25, input=0.2, output=0.05)
    assert (a + b).estimated is True and (b + b).estimated is False
    assert pickle.loads(pickle.dumps(a)).estimated is True
    assert a.to_dict()["estimated"] is True and b.to_dict()["estimated"] is False


# ----------------------------------------------------------------------------- the first call
_FRESH = r"""
import asyncio, json, sys, threading
from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker

async def main():
    inv = build_lm_invoker("openai-chat/gpt-4o-mini", credentials=sys.argv[2], config={"base_url": sys.argv[1]})
    threads = sorted(t.name for t in threading.enumerate())
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv)
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(lmrp.process(q="Tokyo?", event_emitter=emitter))
    at_first = None
    async for ev in emitter.stream():
        if ev.type == "response" and at_first is None:
            at_first = "genai_prices" in sys.modules
    out = await task
    await inv.aclose()
    print(json.dumps({"threads": threads, "at_first_token": at_first, "at_end": "genai_prices" in sys.modules,
                      "cost": out.usage.cost.to_dict()}))

asyncio.run(main())
"""


async def test_prices_stay_off_the_first_call_and_a_later_process_never_imports_them(tmp_path: Any) -> None:
    """The price table (genai-prices, about 0.3 s to import) was loaded on a thread from the moment
    a priced invoker was built, competing with the first request. Now it is never imported while a
    call streams, and a later process prices the same model from the rates kept on disk."""
    import asyncio
    import json
    import os
    import sys

    async def fresh(srv: WireServer) -> dict[str, Any]:
        env = {**os.environ, "LMSTREAM_CACHE_DIR": str(tmp_path)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _FRESH,
            srv.base_url + "/v1",
            KEY,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    usage = fx.openai_chat_usage(1000, 10, cached_tokens=800)
    async with WireServer() as srv:
        srv.enqueue(*[Script(chunks=fx.openai_chat_text(TEXT, usage=usage)) for _ in range(2)])
        cold = await fresh(srv)  # this machine never priced gpt-4o-mini: genai-prices, at the end
        warm = await fresh(srv)
    assert "lmstream-prices" not in cold["threads"], "no price loading beside the first request"
    assert cold["at_first_token"] is False
    assert warm["at_first_token"] is False and warm["at_end"] is False, "a later process never imports it"
    want = _expected("openai", "gpt-4o-mini", input_tokens=1000, cache_read_tokens=800, output_tokens=10)
    for run in (cold, warm):
        assert run["cost"]["total"] == pytest.approx(float(want.total_price), rel=1e-9)
        assert run["cost"]["input"] == pytest.approx(float(want.input_price), rel=1e-9)
        assert run["cost"]["output"] == pytest.approx(float(want.output_price), rel=1e-9)
    assert warm["cost"]["cache_read"] == pytest.approx(cold["cost"]["cache_read"], rel=1e-9)
    assert (tmp_path / "prices.json").exists()
