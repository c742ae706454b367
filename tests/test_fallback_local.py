"""A fallback chain whose fallback is the real embedded model: a primary cut mid-stream is
continued from its partial answer (assistant prefix), exactly."""

from __future__ import annotations

import asyncio

from lmstream import EventEmitter, FallbackLMInvoker, Message, RetryConfig, build_lm_invoker
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

PARTIAL = ("Tokyo", " is", " a", " city", " where")
HYPER = {"max_tokens": 12, "temperature": 0.0}


async def test_continue_on_the_embedded_model_is_partial_plus_continuation_exactly(local_invoker):
    question = "Describe Tokyo in one sentence."
    async with WireServer() as primary:
        chunks = fx.openai_chat_text((*PARTIAL, " nothing", " else"))
        primary.enqueue(Script(chunks=chunks, drop_after=1 + len(PARTIAL)))
        first = build_lm_invoker(
            "openai-compatible/primary",
            config={"base_url": primary.base_url + "/v1"},
            retry_config=RetryConfig(max_retries=0),
        )
        chain = FallbackLMInvoker([first, local_invoker], on_midstream_failure="continue")
        emitter = EventEmitter.with_stream_handler()
        task = asyncio.create_task(chain.invoke(question, HYPER, event_emitter=emitter))
        async with asyncio.timeout(120):
            events = [e async for e in emitter.stream()]
        out = await task
    partial = "".join(PARTIAL)
    # what the embedded model says when asked to continue that prefix on its own
    alone = await local_invoker.invoke([Message.user(question), Message.assistant(partial)], HYPER)
    assert alone.text and out.text == partial + alone.text
    assert "".join(e.value for e in events if e.type == "response") == out.text  # nothing repeated or lost
    (reset,) = [e.value for e in events if e.type == "reset"]
    assert reset == {
        "reason": reset["reason"],
        "from": "openai-compatible/primary",
        "to": "local/smollm2-135m",
        "discarded": 0,
    }
    assert "continues the answer" in reset["reason"]
    assert [a["outcome"] for a in events[-1].value["attempts"]] == ["interrupted", "ok"]
    # and the continuation is not a fresh answer: asked without the prefix, the model says something else
    fresh = await local_invoker.invoke(question, HYPER)
    assert not fresh.text.startswith(alone.text)
