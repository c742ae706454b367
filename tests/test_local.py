"""The embedded model: structured output, model ids, hyperparameters, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import BaseModel

from lmstream import (
    CallbackEventHandler,
    ConfigurationError,
    EventEmitter,
    LocalLMInvoker,
    Message,
    RetryConfig,
    build_lm_invoker,
)
from lmstream.invokers.local import embedded_model_path


class City(BaseModel):
    name: str
    country: str


async def test_structured_output_is_grammar_constrained_with_partial_data_events():
    inv = LocalLMInvoker(response_schema=City)
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        inv.invoke(
            [Message.user("Give me a city in Japan as JSON with name and country.")],
            {"max_tokens": 60, "temperature": 0.0},
            emitter,
        )
    )
    events = [e async for e in emitter.stream()]
    out = await task
    assert isinstance(out.structured_output, City) and out.structured_output.name
    data = [e.value for e in events if e.type == "data"]
    assert len(data) >= 2 and data[-1] == out.structured_output.model_dump()
    assert events[-1].type == "done"


async def test_gguf_path_model_id_runs_the_same_file():
    path = embedded_model_path("smollm2-135m")
    inv = build_lm_invoker(f"local/{path}")
    assert isinstance(inv, LocalLMInvoker) and inv.model_path == str(path)
    out = await inv.invoke("Say hi.", {"max_tokens": 4})
    assert out.text and out.usage.output_tokens == 4 and out.finish_reason == "length"


@pytest.mark.parametrize(
    ("model_id", "needle"),
    [("local/nope", "smollm2-135m"), ("local/missing.gguf", "not found"), ("mistral/x", "known providers")],
)
def test_bad_model_ids_say_how_to_fix(model_id, needle):
    with pytest.raises(ConfigurationError, match=needle):
        build_lm_invoker(model_id)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"max_tokns": 5}, "unknown hyperparameter 'max_tokns'"),
        ({"max_tokens": "5"}, "must be a positive int"),
        ({"temperature": 3}, "between 0 and 2"),
        ({"stop": 5}, "a string or a list of strings"),
    ],
)
async def test_bad_hyperparameters_are_clear_errors(local_invoker, params, needle):
    with pytest.raises(ConfigurationError, match=needle):
        await local_invoker.invoke("hi", params)


async def test_cancel_stops_generation_at_the_next_token(local_invoker):
    """A long generation, cancelled: the next request starts at once instead of queueing."""
    await local_invoker.invoke("Hi", {"max_tokens": 1})  # the generation thread exists from here on
    threads_before = threading.active_count()
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(local_invoker.invoke("Write a long story.", {"max_tokens": 500}, emitter))
    seen = 0
    async for event in emitter.stream():
        seen += event.type == "response"
        if seen == 3:
            task.cancel()
    assert seen >= 3  # the stream ended by itself after the cancel
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.perf_counter()
    out = await asyncio.wait_for(local_invoker.invoke("Hi", {"max_tokens": 2}), 10)
    # 500 tokens at ~100 tokens/s would block a queued request for seconds
    assert out.text and time.perf_counter() - t0 < 2.0
    assert threading.active_count() == threads_before  # no thread left behind by the cancel


async def test_idle_timeout_does_not_count_time_queued_behind_another_generation():
    """Two concurrent requests on one sequence (parallel=1): the second is queued behind the
    first for twice its idle timeout, yet does not time out; its idle clock starts when its
    generation does."""
    idle = 2.0
    local_invoker = LocalLMInvoker(parallel=1, n_ctx=512)
    patient = LocalLMInvoker(parallel=1, n_ctx=512, retry_config=RetryConfig(idle_timeout=idle, max_retries=0))
    generating = asyncio.Event()
    emitter = EventEmitter([CallbackEventHandler(lambda e: e.type == "response" and generating.set())])
    story = "Write a long story about a dragon and a knight."
    first = asyncio.create_task(local_invoker.invoke(story, {"max_tokens": 1000, "temperature": 0.0}, emitter))
    await asyncio.wait_for(generating.wait(), 60)  # the first generation holds the model now
    second = asyncio.create_task(patient.invoke("Say hi.", {"max_tokens": 4, "temperature": 0.0}))
    await asyncio.sleep(2 * idle)  # queued all along: more than the idle timeout
    assert not first.done(), "the first generation ended early; the test needs it to hold the model"
    assert not second.done(), second.exception() if second.done() else None
    first.cancel()  # generation stops at the next token; the queued request starts
    out = await asyncio.wait_for(second, 60)
    with pytest.raises(asyncio.CancelledError):
        await first
    await emitter.close()
    assert out.text and out.finish_reason in ("stop", "length")


def _weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def test_tools_on_the_embedded_model_are_refused_at_construction(local_invoker):
    """The 135M model ignores tools and invents an answer: say so at once, and what can call tools."""
    from lmstream import ConfigurationError, LMRequestProcessor, LocalLMInvoker, PromptBuilder
    from lmstream import build_lm_request_processor as build

    attempts = [
        lambda: LocalLMInvoker(tools=[_weather]),
        lambda: build("local/smollm2-135m", tools=[_weather]),
        lambda: LMRequestProcessor(PromptBuilder(user_template="{q}"), local_invoker, tools=[_weather]),
        lambda: local_invoker.set_tools([_weather]),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigurationError) as info:
            attempt()
        message = str(info.value)
        assert "cannot call tools" in message and "local/smollm2-135m" in message
        for model in ("openai/", "anthropic/", "google/", "openai-compatible/"):
            assert model in message
    assert local_invoker.tools == []
