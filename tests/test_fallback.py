"""Fallback chains and pools against the fault-injecting upstream (tests/wire/server.py).

Each model is its own `WireServer`, so the test counts on the upstream exactly how often each
model was asked. The Chat Completions path is lmstream's own HTTP client (the OpenAI-compatible
invoker); the behaviour under test is the engine's, shared by every provider.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from lmstream import (
    Budget,
    BudgetExceededError,
    ContextOverflowError,
    EventEmitter,
    FallbackLMInvoker,
    LMRequestProcessor,
    PooledLMInvoker,
    PromptBuilder,
    ProviderError,
    RateLimitError,
    RetryConfig,
    StreamInterruptedError,
    build_lm_invoker,
)
from lmstream.errors import ConfigurationError
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .faults_support import _ClosedPort

FAST = RetryConfig(max_retries=1, base_delay=0.01, jitter=False)
ANSWER = ("The", " fallback", " answers", ".")
PRIMARY = ("Once", " upon", " a", " time", " there", " was")


def chat(srv: Any, name: str = "primary", retry: RetryConfig = FAST, **config: Any) -> Any:
    """An OpenAI-compatible invoker pointed at one upstream."""
    return build_lm_invoker(
        f"openai-compatible/{name}", config={"base_url": srv.base_url + "/v1", **config}, retry_config=retry
    )


def text(deltas: tuple[str, ...] = ANSWER) -> list[bytes]:
    return fx.openai_chat_text(deltas, usage=fx.openai_chat_usage(11, len(deltas)))


async def run(inv: Any, **kw: Any) -> tuple[list[Any], Any]:
    """One request through a processor; (its events, its output or the exception)."""
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, **kw)
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(lmrp.process(q="Tell me a story", event_emitter=emitter))
    async with asyncio.timeout(10):
        events = [e async for e in emitter.stream()]
    try:
        out: Any = await task
    except Exception as exc:
        out = exc
    await emitter.close()
    return events, out


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def said(events: list[Any]) -> str:
    return "".join(e.value for e in events if e.type == "response")


def assert_clean_switch(events: list[Any], out: Any) -> None:
    """Before the first content: one done, no error, no reset, one request id, the fallback's text."""
    assert not isinstance(out, BaseException), repr(out)
    assert out.text == "".join(ANSWER) == said(events)
    assert types(events).count("done") == 1 and events[-1].type == "done"
    assert "error" not in types(events) and "reset" not in types(events)
    assert len({e.metadata["request_id"] for e in events}) == 1


# ------------------------------------------------------------------ before the first content


async def test_refused_connection_falls_back():
    async with WireServer() as fb:
        fb.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker([chat(_ClosedPort()), chat(fb, "fallback")])
        events, out = await run(inv)
        assert len(fb.requests) == 1
    assert_clean_switch(events, out)
    attempts = events[-1].value["attempts"]
    assert [(a["model"], a["outcome"]) for a in attempts] == [
        ("openai-compatible/primary", "error"),
        ("openai-compatible/fallback", "ok"),
    ]
    assert attempts[1]["output_tokens"] == len(ANSWER)
    assert "127.0.0.1" not in json.dumps(events[-1].to_dict())  # no internal address in what clients see


@pytest.mark.parametrize("status", [429, 500, 503, 529])
async def test_retryable_status_falls_back_after_the_primarys_own_retries(status):
    async with WireServer(repeat_last=True) as primary, WireServer() as fb:
        primary.enqueue(Script(status=status, body=fx.openai_error_for(status)))
        fb.enqueue(Script(chunks=text()))
        events, out = await run(FallbackLMInvoker([chat(primary), chat(fb, "fallback")]))
        assert len(primary.requests) == 1 + FAST.max_retries  # its own retry, then the switch
        assert len(fb.requests) == 1
    assert_clean_switch(events, out)
    assert events[-1].value["attempts"][0]["status_code"] == status


async def test_stall_before_first_token_hits_first_token_timeout():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=text(PRIMARY), stall_after=0, stall_max=10))
        fb.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker([chat(primary), chat(fb, "fallback")], first_token_timeout=0.4)
        t0 = time.monotonic()
        events, out = await run(inv)
        elapsed = time.monotonic() - t0
        assert await primary.wait_for(lambda s: s.requests[0].disconnected, 2.0)  # its connection closed
        assert len(primary.requests) == 1 and len(fb.requests) == 1
    assert_clean_switch(events, out)
    assert 0.35 <= elapsed < 3.0, elapsed
    assert events[-1].value["attempts"][0]["outcome"] == "timeout"


async def test_first_token_timeout_does_not_cut_a_stream_that_started():
    """The timer stops at the first content event: a slow but flowing answer is kept."""
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=text(PRIMARY), delay_between=0.1))
        inv = FallbackLMInvoker([chat(primary), chat(fb, "fallback")], first_token_timeout=0.3)
        events, out = await run(inv)
        assert len(fb.requests) == 0
    assert out.text == "".join(PRIMARY) and "reset" not in types(events)


async def test_in_band_error_before_content_falls_back():
    async with WireServer(repeat_last=True) as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=fx.openai_chat_midstream_error(())))
        fb.enqueue(Script(chunks=text()))
        events, out = await run(FallbackLMInvoker([chat(primary), chat(fb, "fallback")]))
        # an in-band error is not retried by the invoker itself (retryable=False): straight to the fallback
        assert len(primary.requests) == 1 and len(fb.requests) == 1
    assert_clean_switch(events, out)


@pytest.mark.parametrize("status", [400, 422])
async def test_a_malformed_request_does_not_fall_back(status):
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(status=status, body=fx.openai_error_for(status)))
        fb.enqueue(Script(chunks=text()))
        events, out = await run(FallbackLMInvoker([chat(primary), chat(fb, "fallback")]))
        assert len(primary.requests) == 1 and len(fb.requests) == 0
    assert isinstance(out, ProviderError) and out.status_code == status
    assert types(events)[-1] == "error" and "done" not in types(events)


async def test_every_model_failing_is_one_error_naming_the_attempts():
    async with WireServer(repeat_last=True) as a, WireServer(repeat_last=True) as b:
        a.enqueue(Script(status=500, body=fx.openai_error_for(500)))
        b.enqueue(Script(status=429, body=fx.openai_error_for(429)))
        events, out = await run(FallbackLMInvoker([chat(a), chat(b, "fallback")]))
        assert len(a.requests) == 2 and len(b.requests) == 2
    assert isinstance(out, RateLimitError)  # the last model's failure
    assert types(events).count("error") == 1 and "done" not in types(events)
    assert [x["status_code"] for x in events[-1].metadata["attempts"]] == [500, 429]


async def test_context_overflow_goes_only_to_a_larger_window():
    overflow = {
        "error": {"message": "This model's maximum context length is 4096 tokens", "code": "context_length_exceeded"}
    }
    async with WireServer() as small, WireServer() as same, WireServer() as large:
        small.enqueue(Script(status=400, body=overflow))
        large.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker(
            [
                chat(small, context_window=4096),
                chat(same, "same", context_window=4096),
                chat(large, "large", context_window=32768),
            ]
        )
        events, out = await run(inv)
        assert (len(small.requests), len(same.requests), len(large.requests)) == (1, 0, 1)
    assert_clean_switch(events, out)


async def test_context_overflow_with_no_larger_window_is_the_overflow():
    overflow = {"error": {"message": "maximum context length is 4096 tokens", "code": "context_length_exceeded"}}
    async with WireServer() as small, WireServer() as same:
        small.enqueue(Script(status=400, body=overflow))
        _, out = await run(FallbackLMInvoker([chat(small, context_window=4096), chat(same, "same")]))
        assert len(same.requests) == 0
    assert isinstance(out, ContextOverflowError) and "larger context window" in str(out)


# ------------------------------------------------------------------ after the first content (drop@N)


def _dropped(n: int = 3) -> Script:
    """The primary's answer cut (FIN, no end marker) after `n` text deltas."""
    chunks = text(PRIMARY)
    return Script(chunks=chunks, drop_after=1 + n)  # the role chunk, then one chunk per delta


async def test_drop_mid_stream_error_policy_raises_with_the_partial():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(_dropped(3))
        events, out = await run(FallbackLMInvoker([chat(primary), chat(fb, "fallback")]))
        assert len(fb.requests) == 0 and len(primary.requests) == 1
    assert isinstance(out, StreamInterruptedError)
    assert out.partial_output.text == "".join(PRIMARY[:3]) == said(events)
    assert types(events)[-1] == "error" and "reset" not in types(events)


async def test_drop_mid_stream_restart_gives_one_reset_and_the_fallbacks_text_alone():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(_dropped(3))
        fb.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker([chat(primary), chat(fb, "fallback")], on_midstream_failure="restart")
        events, out = await run(inv)
        assert len(primary.requests) == 1 and len(fb.requests) == 1
    assert out.text == "".join(ANSWER)
    resets = [e for e in events if e.type == "reset"]
    assert len(resets) == 1 and types(events).count("done") == 1 and "error" not in types(events)
    partial = "".join(PRIMARY[:3])
    assert resets[0].value["discarded"] == len(partial)
    assert (
        resets[0].value["from"] == "openai-compatible/primary" and resets[0].value["to"] == "openai-compatible/fallback"
    )
    i = types(events).index("reset")
    assert said(events[:i]) == partial and said(events[i:]) == "".join(ANSWER)
    before, after = (
        {e.metadata["block_id"] for e in events[:i] if e.type == "response"},
        {e.metadata["block_id"] for e in events[i:] if e.type == "response"},
    )
    assert before and after and not (before & after)  # a new text block: the UI opens a new part
    assert [a["outcome"] for a in events[-1].value["attempts"]] == ["interrupted", "ok"]


async def test_drop_mid_stream_continue_sends_the_partial_as_an_assistant_prefix():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(_dropped(3))
        rest = PRIMARY[3:]
        fb.enqueue(Script(chunks=text(rest)))
        inv = FallbackLMInvoker([chat(primary), chat(fb, "fallback")], on_midstream_failure="continue")
        events, out = await run(inv)
        sent = fb.requests[0].json
    partial = "".join(PRIMARY[:3])
    assert sent["messages"][-1] == {"role": "assistant", "content": partial}
    assert sent["continue_final_message"] is True and sent["add_generation_prompt"] is False
    assert out.text == "".join(PRIMARY) == said(events)  # no character lost or repeated
    (reset,) = [e for e in events if e.type == "reset"]
    assert reset.value["discarded"] == 0 and "continues" in reset.value["reason"]
    assert len({e.metadata["block_id"] for e in events if e.type == "response"}) == 1  # the same text part


async def test_continue_falls_to_restart_where_the_target_cannot_continue_and_says_so():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(_dropped(2))
        fb.enqueue(Script(chunks=text()))
        target = build_lm_invoker(
            "openai-chat/gpt-4o-mini", credentials="sk-test", config={"base_url": fb.base_url + "/v1"}
        )
        inv = FallbackLMInvoker([chat(primary), target], on_midstream_failure="continue")
        events, out = await run(inv)
        assert fb.requests[0].json["messages"][-1]["role"] == "user"  # asked afresh
    assert out.text == "".join(ANSWER)
    (reset,) = [e for e in events if e.type == "reset"]
    assert reset.value["discarded"] == len("".join(PRIMARY[:2]))
    assert "does not continue an assistant prefix" in reset.value["reason"]


async def test_continue_is_refused_for_a_tool_call_partial():
    calls = fx.openai_chat_tool_calls([fx.ToolCall("get_weather", '{"city": "Paris"}', id="c1", fragment=4)])
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=calls, drop_after=3))
        fb.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker([chat(primary), chat(fb, "fallback")], on_midstream_failure="continue")
        events, out = await run(inv)
        assert fb.requests[0].json["messages"][-1]["role"] == "user"
    assert out.text == "".join(ANSWER) and not out.tool_calls
    (reset,) = [e for e in events if e.type == "reset"]
    assert "tool call" in reset.value["reason"]


async def test_a_fallback_failing_before_content_after_a_reset_is_announced_too():
    async with WireServer() as primary, WireServer(repeat_last=True) as second, WireServer() as third:
        primary.enqueue(_dropped(2))
        second.enqueue(Script(status=503, body=fx.openai_error_for(503)))
        third.enqueue(Script(chunks=text()))
        inv = FallbackLMInvoker(
            [chat(primary), chat(second, "second"), chat(third, "third")], on_midstream_failure="restart"
        )
        events, out = await run(inv)
    assert out.text == "".join(ANSWER)
    resets = [e.value for e in events if e.type == "reset"]
    assert [(r["from"], r["to"]) for r in resets] == [
        ("openai-compatible/primary", "openai-compatible/second"),
        ("openai-compatible/second", "openai-compatible/third"),
    ]
    assert [r["discarded"] for r in resets] == [len("".join(PRIMARY[:2])), 0]


# ------------------------------------------------------------------ accounting


async def test_usage_and_cost_add_up_every_attempt_with_the_parts_kept():
    """A priced model whose answer is cut after its usage was reported, then the fallback."""
    primary_chunks = fx.openai_chat_text(PRIMARY, usage=fx.openai_chat_usage(11, 6))
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=primary_chunks, drop_after=len(primary_chunks) - 1))  # no [DONE]
        fb.enqueue(Script(chunks=fx.openai_chat_text(ANSWER, usage=fx.openai_chat_usage(11, 4))))
        a = build_lm_invoker(
            "openai-chat/gpt-4o-mini", credentials="sk-t", config={"base_url": primary.base_url + "/v1"}
        )
        b = build_lm_invoker("openai-chat/gpt-4o-mini", credentials="sk-t", config={"base_url": fb.base_url + "/v1"})
        events, out = await run(FallbackLMInvoker([a, b], on_midstream_failure="restart"))
    assert out.text == "".join(ANSWER)
    assert [p["output_tokens"] for p in out.attempts] == [6, 4]
    assert out.usage.output_tokens == 10 and out.usage.input_tokens == 22
    parts = [p["usage"]["cost"]["total"] for p in out.attempts]
    assert all(c > 0 for c in parts) and out.usage.cost == pytest.approx(sum(parts))
    assert events[-1].metadata["usage"]["output_tokens"] == 10


async def test_the_budget_counts_every_attempt_and_stops_the_chain():
    primary_chunks = fx.openai_chat_text(PRIMARY, usage=fx.openai_chat_usage(100_000, 6))
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=primary_chunks, drop_after=len(primary_chunks) - 1))
        fb.enqueue(Script(chunks=text()))
        a = build_lm_invoker(
            "openai-chat/gpt-4o-mini", credentials="sk-t", config={"base_url": primary.base_url + "/v1"}
        )
        b = build_lm_invoker("openai-chat/gpt-4o-mini", credentials="sk-t", config={"base_url": fb.base_url + "/v1"})
        budget = Budget(0.001)  # the primary's 100k prompt tokens cost more than this
        events, out = await run(FallbackLMInvoker([a, b], on_midstream_failure="restart"), budget=budget)
        assert len(fb.requests) == 0
    assert isinstance(out, BudgetExceededError)
    assert budget.spent > 0.001 and types(events)[-1] == "error"


async def test_one_span_per_attempt_under_the_request_span():
    from .otel_support import telemetry

    async with WireServer(repeat_last=True) as primary, WireServer() as fb:
        primary.enqueue(Script(status=500, body=fx.openai_error_for(500)))
        fb.enqueue(Script(chunks=text()))
        with telemetry() as t:
            _, out = await run(FallbackLMInvoker([chat(primary), chat(fb, "fallback")]))
            spans = t.spans()
    assert out.text == "".join(ANSWER)
    calls = [s for s in spans if s.attributes and s.attributes.get("gen_ai.request.model") in ("primary", "fallback")]
    assert [s.attributes["gen_ai.request.model"] for s in sorted(calls, key=lambda s: s.start_time)] == [
        "primary",
        "fallback",
    ]
    parents = {s.parent.span_id for s in calls if s.parent is not None}
    (request,) = [s for s in spans if s.context.span_id in parents]
    assert request.parent is None  # the request span, root of the trace
    assert calls[0].status.status_code.name == "ERROR" and calls[1].status.status_code.name != "ERROR"


# ------------------------------------------------------------------ construction


def test_build_lm_invoker_with_fallbacks_builds_a_chain():
    inv = build_lm_invoker(
        "openai-compatible/a",
        config={"base_url": "http://127.0.0.1:9/v1"},
        fallbacks=["local/smollm2-135m"],
        first_token_timeout=5,
        on_midstream_failure="continue",
    )
    assert isinstance(inv, FallbackLMInvoker)
    assert [m.model_id for m in inv.members] == ["openai-compatible/a", "local/smollm2-135m"]
    assert inv.first_token_timeout == 5.0 and inv.on_midstream_failure == "continue"
    with pytest.raises(ConfigurationError, match="on_midstream_failure"):
        FallbackLMInvoker(inv.members, on_midstream_failure="retry")
    with pytest.raises(ConfigurationError, match="invokers"):
        FallbackLMInvoker(["local/smollm2-135m"])  # type: ignore[list-item]


# ------------------------------------------------------------------ pools


async def test_pool_sends_no_traffic_to_a_cooling_deployment():
    no_retry = RetryConfig(max_retries=0)
    async with WireServer(repeat_last=True) as bad, WireServer(repeat_last=True) as good:
        bad.enqueue(Script(status=429, headers={"Retry-After": "0"}, body=fx.openai_error_for(429)))
        good.enqueue(Script(chunks=text()))
        pool = PooledLMInvoker(
            [chat(bad, "m", no_retry), chat(good, "m", no_retry)], strategy="round-robin", cooldown=0.6
        )
        outs = [await run(pool) for _ in range(6)]
        assert all(o.text == "".join(ANSWER) for _, o in outs)
        assert len(bad.requests) == 1 and len(good.requests) == 6  # after its first 429: nothing
        assert [c["deployment"] for c in pool.cooling()] == [0]
        await asyncio.sleep(0.7)  # the cooldown ends: it gets traffic again
        assert pool.cooling() == []
        for _ in range(2):
            await run(pool)
        assert len(bad.requests) == 2


async def test_pool_cooldown_honours_a_longer_retry_after():
    async with WireServer(repeat_last=True) as bad, WireServer(repeat_last=True) as good:
        bad.enqueue(Script(status=429, headers={"Retry-After": "30"}, body=fx.openai_error_for(429)))
        good.enqueue(Script(chunks=text()))
        no_retry = RetryConfig(max_retries=0)
        pool = PooledLMInvoker(
            [chat(bad, "m", no_retry), chat(good, "m", no_retry)], strategy="round-robin", cooldown=0.1
        )
        await run(pool)
        await run(pool)
    (cool,) = pool.cooling()
    assert cool["seconds_left"] > 25


async def test_a_pool_with_every_deployment_cooling_fails_fast_and_a_chain_moves_on():
    async with WireServer(repeat_last=True) as bad, WireServer() as fb:
        bad.enqueue(Script(status=503, body=fx.openai_error_for(503)))
        fb.enqueue(Script(chunks=text()), Script(chunks=text()))
        pool = PooledLMInvoker([chat(bad, "m", RetryConfig(max_retries=0))], cooldown=30)
        chain = FallbackLMInvoker([pool, chat(fb, "fallback")])
        for _ in range(2):
            events, out = await run(chain)
            assert_clean_switch(events, out)
        assert len(bad.requests) == 1 and len(fb.requests) == 2
    _, err = await run(pool)
    assert isinstance(err, RateLimitError) and "cooling down" in str(err) and err.retry_after > 20


async def test_least_busy_spreads_concurrent_requests():
    async with WireServer(repeat_last=True) as a, WireServer(repeat_last=True) as b:
        for s in (a, b):
            s.enqueue(Script(chunks=text(), delay_between=0.05))
        pool = PooledLMInvoker([chat(a, "m"), chat(b, "m")])
        await asyncio.gather(*(run(pool) for _ in range(4)))
        assert len(a.requests) == 2 and len(b.requests) == 2


@pytest.mark.parametrize("cut", [3, 4])
async def test_continue_on_anthropic_sends_the_prefix_unless_it_ends_in_whitespace(cut):
    """Anthropic continues a final assistant message, but refuses one ending in whitespace."""
    from tests.wire.providers import PROVIDERS
    from tests.wire.providers import invoker as wire_invoker

    deltas = ("Once", " upon", " a ", "time", " there")  # cut after 3: "Once upon a " ends in a space
    p = PROVIDERS["anthropic"]
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=text(deltas), drop_after=1 + cut))
        fb.enqueue(Script(chunks=p.text(ANSWER)))
        inv = FallbackLMInvoker([chat(primary), wire_invoker(p, fb)], on_midstream_failure="continue")
        events, out = await run(inv)
        last = fb.requests[0].json["messages"][-1]
    partial = "".join(deltas[:cut])
    (reset,) = [e.value for e in events if e.type == "reset"]
    if cut == 4:  # "Once upon a time": continued
        assert last == {"role": "assistant", "content": [{"type": "text", "text": partial}]}
        assert out.text == partial + "".join(ANSWER) and reset["discarded"] == 0
    else:
        assert last["role"] == "user" and out.text == "".join(ANSWER)
        assert "ends in whitespace" in reset["reason"] and reset["discarded"] == len(partial)


async def test_a_stall_mid_stream_hits_the_idle_timeout_and_restarts_on_the_fallback():
    async with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(chunks=text(PRIMARY), stall_after=3, stall_max=10))
        fb.enqueue(Script(chunks=text()))
        stalling = chat(primary, retry=RetryConfig(max_retries=0, idle_timeout=0.3))
        t0 = time.monotonic()
        events, out = await run(FallbackLMInvoker([stalling, chat(fb, "fallback")], on_midstream_failure="restart"))
        elapsed = time.monotonic() - t0
        assert await primary.wait_for(lambda s: s.requests[0].disconnected, 2.0)
    assert out.text == "".join(ANSWER) and elapsed < 3.0
    (reset,) = [e.value for e in events if e.type == "reset"]
    assert reset["discarded"] == len("".join(PRIMARY[:2]))  # the role chunk, then two words before the stall


def test_a_chain_on_the_sync_api():
    with WireServer() as primary, WireServer() as fb:
        primary.enqueue(Script(status=503, body=fx.openai_error_for(503)))
        fb.enqueue(Script(chunks=text()))
        chain = FallbackLMInvoker([chat(primary, retry=RetryConfig(max_retries=0)), chat(fb, "fallback")])
        with chain.stream_sync("hi") as stream:
            kinds = [e.type for e in stream]
        assert kinds[-1] == "done" and "error" not in kinds
        assert stream.result().text == "".join(ANSWER)


async def test_a_batch_with_a_budget_runs_through_a_chain_of_priced_models():
    async with WireServer(repeat_last=True) as primary, WireServer(repeat_last=True) as fb:
        primary.enqueue(Script(status=503, body=fx.openai_error_for(503)))
        fb.enqueue(Script(chunks=fx.openai_chat_text(ANSWER, usage=fx.openai_chat_usage(11, 4))))
        no_retry = RetryConfig(max_retries=0)
        a = build_lm_invoker(
            "openai-chat/gpt-4o-mini",
            credentials="sk-t",
            config={"base_url": primary.base_url + "/v1"},
            retry_config=no_retry,
        )
        b = build_lm_invoker("openai-chat/gpt-4o-mini", credentials="sk-t", config={"base_url": fb.base_url + "/v1"})
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), FallbackLMInvoker([a, b]))
        budget = Budget(1.0)
        results = await lmrp.batch([{"prompt_kwargs": {"q": "hi"}}] * 2, budget=budget)
    assert [r.text for r in results] == ["".join(ANSWER)] * 2
    assert budget.spent > 0


def test_the_ui_stream_maps_a_restart_to_a_new_part_and_a_continuation_to_the_same_one():
    from lmstream.protocols.ui_stream import UIStreamMapper

    def run(discarded: int, second_block: str) -> list[dict[str, Any]]:
        m = UIStreamMapper("msg_1")
        meta1 = {"request_id": "r", "block_id": "r.1", "step": 1}
        meta2 = {"request_id": "r", "block_id": second_block, "step": 1}
        reset = {"reason": "x", "from": "a/m", "to": "b/m", "discarded": discarded}
        return [
            *m.feed("response", "Part", meta1),
            *m.feed("reset", reset, {"request_id": "r", "step": 1}),
            *m.feed("response", "Next", meta2),
            *m.feed("done", "", {"request_id": "r", "finish_reason": "stop", "usage": {}}),
        ]

    restart = run(4, "r.2")
    assert [c["type"] for c in restart] == [
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "data-reset",
        "text-start",
        "text-delta",
        "text-end",
        "data-usage",
        "finish-step",
        "finish",
    ]
    kinds = [c["type"] for c in restart]
    assert kinds.index("text-end") < kinds.index("data-reset") < kinds.index("text-start", kinds.index("data-reset"))
    assert restart[kinds.index("data-reset")] == {
        "type": "data-reset",
        "id": "reset-1",
        "data": {"reason": "x", "from": "a/m", "to": "b/m", "discarded": 4},
    }
    cont = [c["type"] for c in run(0, "r.1")]
    assert cont.count("text-start") == 1 and cont.index("data-reset") < cont.index("text-end")
