"""The streaming guide (docs/streaming.md, "The emitter pattern"), run as written, on the real embedded model."""

from __future__ import annotations

import asyncio
import json

from lmstream import (
    EventEmitter,
    EventLevel,
    LMOutput,
    LMRequestProcessor,
    LocalLMInvoker,
    PromptBuilder,
    StreamEventHandler,
)

from .conftest import SHORT


async def test_guide_pattern_streams_tokens_then_done(local_invoker):
    event_emitter = EventEmitter.with_stream_handler()
    prompt_builder = PromptBuilder(system_template="You are a helpful travel guide.", user_template="{question}")
    lmrp = LMRequestProcessor(prompt_builder, local_invoker)
    task = asyncio.create_task(
        lmrp.process(
            question="What are some great activities in Tokyo?", event_emitter=event_emitter, hyperparameters=SHORT
        )
    )
    events = [e async for e in event_emitter.stream()]  # must terminate by itself
    output = await task
    await event_emitter.close()

    assert isinstance(output, LMOutput)
    responses = [e for e in events if e.type == "response"]
    assert len(responses) >= 5
    assert all(e.level == EventLevel.INFO for e in responses)
    assert "".join(e.value for e in responses) == output.text
    assert output.text.strip()
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert all(s.tzinfo is not None for s in stamps)
    assert len({e.id for e in events}) == len(events)
    done = events[-1]
    assert done.type == "done" and done.level == EventLevel.INFO
    assert done.metadata["usage"]["output_tokens"] == output.usage.output_tokens > 0
    assert output.usage.input_tokens > 0
    assert done.metadata["finish_reason"] == output.finish_reason in ("stop", "length")
    assert output.time_to_first_token is not None and 0 < output.time_to_first_token <= output.duration
    assert len({e.metadata["request_id"] for e in events}) == 1
    # the answer text is one block
    assert len({e.metadata["block_id"] for e in responses}) == 1


async def test_gllm_spelling_of_the_guide_runs_unchanged():
    """GLLM's own spelling of the guide, imports changed only: serialize=True, prompt_kwargs=, streamer.stream()."""
    streamer = StreamEventHandler(serialize=True)
    event_emitter = EventEmitter([streamer])
    lm_invoker = LocalLMInvoker(model_name="smollm2-135m", default_hyperparameters=SHORT)
    prompt_builder = PromptBuilder(system_template="You are a travel guide.", user_template="{question}")
    lm_request_processor = LMRequestProcessor(prompt_builder=prompt_builder, lm_invoker=lm_invoker)
    processor_task = asyncio.create_task(
        lm_request_processor.process(
            prompt_kwargs={"question": "I want to go to Tokyo, Japan. What should I do?"}, event_emitter=event_emitter
        )
    )
    tokens = []
    async for event in streamer.stream():
        token = json.loads(event)
        assert set(token) == {"id", "value", "level", "type", "timestamp", "metadata"}
        tokens.append(token)
    output = await processor_task
    await event_emitter.close()
    response = [t for t in tokens if t["type"] == "response"]
    assert response and all(t["level"] == "INFO" for t in response)
    assert "".join(t["value"] for t in response) == output.text
    assert tokens[-1]["type"] == "done"
