"""LMRequestProcessor: prompt kwargs, JSON parsing, cancellation, shared emitters, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lmstream import (
    ConfigurationError,
    EventEmitter,
    EventLevel,
    JSONOutputParser,
    LMOutput,
    LMRequestProcessor,
    LMStreamError,
    Message,
    OutputParserError,
    PromptBuilder,
    PromptError,
    build_lm_request_processor,
)
from lmstream.engine.deltas import Delta, UsageDelta
from lmstream.invokers import PROVIDERS
from lmstream.testing import ScriptedLMInvoker

from .conftest import SHORT

WAIT = 60


async def collect(emitter: EventEmitter, timeout: float = WAIT) -> list:
    async def run() -> list:
        return [e async for e in emitter.stream()]

    return await asyncio.wait_for(run(), timeout)


def make(invoker, user_template: str = "{question}", **kw) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template=user_template), invoker, **kw)


# --------------------------------------------------------------------------- prompt kwargs


def word_counting_invoker() -> ScriptedLMInvoker:
    """Answers "Hello." and, like a tokenizer, counts more input tokens for a longer prompt (one per word)."""

    def answer(messages: list[Message], params: dict[str, Any]) -> list[Delta]:
        return ["Hello", ".", UsageDelta(input_tokens=sum(len(m.text.split()) for m in messages), output_tokens=2)]

    return ScriptedLMInvoker(answer)


async def test_prompt_kwargs_as_keywords_and_as_prompt_kwargs_reach_the_model():
    lmrp = make(word_counting_invoker())
    tiny = {"max_tokens": 2, "temperature": 0.0}
    a = await asyncio.wait_for(lmrp.process(question="Say hello.", hyperparameters=tiny), WAIT)
    b = await asyncio.wait_for(lmrp.process(prompt_kwargs={"question": "Say hello."}, hyperparameters=tiny), WAIT)
    c = await asyncio.wait_for(
        lmrp.process(
            prompt_kwargs={"question": "Say hello to every single person in this crowded room."}, hyperparameters=tiny
        ),
        WAIT,
    )
    assert isinstance(a, LMOutput) and isinstance(b, LMOutput)
    assert a.text and b.text and c.text
    # the same prompt either way (same token count); a longer value makes a longer prompt
    assert a.usage.input_tokens == b.usage.input_tokens > 0
    assert c.usage.input_tokens > a.usage.input_tokens


async def test_same_key_given_both_ways_is_an_error():
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        make(ScriptedLMInvoker(["Blue", " it is"], delay=0.001)).process(
            prompt_kwargs={"question": "a"}, question="b", event_emitter=emitter
        )
    )
    events = await collect(emitter, 10)
    with pytest.raises(LMStreamError, match="question"):
        await asyncio.wait_for(task, 10)
    assert [e.type for e in events] == ["error"]
    assert "question" in events[0].value


async def test_prompt_error_inside_process_ends_a_waiting_stream():
    emitter = EventEmitter.with_stream_handler()
    consumer = asyncio.create_task(collect(emitter, 10))
    await asyncio.sleep(0.01)  # the consumer is already waiting when the request starts
    task = asyncio.create_task(
        make(ScriptedLMInvoker(["Blue", " it is"], delay=0.001)).process(wrong_key="x", event_emitter=emitter)
    )
    events = await asyncio.wait_for(consumer, 10)
    with pytest.raises(PromptError) as info:
        await asyncio.wait_for(task, 10)
    assert info.value.missing == ["question"] and info.value.unknown == ["wrong_key"]
    assert events, "the error must be streamed"
    last = events[-1]
    assert last.type == "error" and last.level == EventLevel.ERROR
    assert last.metadata["error_type"] == "PromptError"
    assert "question" in last.value and "wrong_key" in last.value
    assert last.metadata["request_id"]
    await emitter.close()


# --------------------------------------------------------------------------- JSON parser


@pytest.mark.parametrize(
    "text",
    [
        '{"city": "Tokyo", "days": 3}',
        '```json\n{"city": "Tokyo", "days": 3}\n```',
        '```\n{"city": "Tokyo", "days": 3}\n```',
        'Sure! Here is the JSON:\n{"city": "Tokyo", "days": 3}\nHope this helps.',
        '  Here you go: ```json\n{"city": "Tokyo", "days": 3}\n``` enjoy',
    ],
)
def test_json_parser_tolerates_fences_and_prose(text):
    assert JSONOutputParser().parse(text) == {"city": "Tokyo", "days": 3}


def test_json_parser_arrays_and_errors():
    assert JSONOutputParser().parse('The list: ["a", "b"] done') == ["a", "b"]
    garbage = "I cannot answer that { not json ]"
    with pytest.raises(OutputParserError) as info:
        JSONOutputParser().parse(garbage)
    assert info.value.text == garbage
    assert "JSON" in str(info.value)


async def test_json_parser_error_from_process_keeps_the_raw_text():
    emitter = EventEmitter.with_stream_handler()
    lmrp = make(ScriptedLMInvoker(["Hello", " in plain words."]), output_parser=JSONOutputParser())
    task = asyncio.create_task(lmrp.process(question="Say hello.", event_emitter=emitter))
    events = await collect(emitter)
    with pytest.raises(OutputParserError) as info:
        await asyncio.wait_for(task, WAIT)
    assert info.value.text == "Hello in plain words." == "".join(e.value for e in events if e.type == "response")
    assert events[-1].type == "error" and events[-1].metadata["error_type"] == "OutputParserError"


async def test_json_parser_parses_a_fenced_answer_from_process():
    lmrp = make(ScriptedLMInvoker(["Sure:\n```json\n", '{"cities": ["Tokyo",', ' "Kyoto"]}', "\n```"]),
                output_parser=JSONOutputParser())  # fmt: skip
    assert await asyncio.wait_for(lmrp.process(question="Two cities"), WAIT) == {"cities": ["Tokyo", "Kyoto"]}


async def test_a_template_key_named_like_a_process_argument():
    lmrp = LMRequestProcessor(PromptBuilder(user_template="Summarize: {history}"), ScriptedLMInvoker(["ok"]))
    out = await lmrp.process(prompt_kwargs={"history": "we met in Kyoto"})
    assert out.text == "ok"
    assert lmrp.lm_invoker.calls[0][0][-1].text == "Summarize: we met in Kyoto"  # type: ignore[attr-defined]
    with pytest.raises(PromptError, match=r"prompt_kwargs=\{'history': \.\.\.\}") as info:
        await lmrp.process(history=[])
    assert info.value.missing == ["history"]


# --------------------------------------------------------------------------- cancellation


async def test_cancelling_the_task_ends_stream_with_a_cancelled_error_event(local_invoker):
    emitter = EventEmitter.with_stream_handler()
    task = asyncio.create_task(
        make(local_invoker).process(
            question="Write a long story about a dragon.",
            hyperparameters={"max_tokens": 400, "temperature": 0.0},
            event_emitter=emitter,
        )
    )
    events = []

    async def consume() -> None:
        async for e in emitter.stream():
            events.append(e)
            if len(events) == 3:
                task.cancel()

    await asyncio.wait_for(consume(), WAIT)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled()
    responses = [e for e in events if e.type == "response"]
    assert 3 <= len(responses) < 50  # generation stopped early
    last = events[-1]
    assert last.type == "error" and last.level == EventLevel.ERROR
    assert last.metadata["error_type"] == "CancelledError"
    assert not any(e.type == "done" for e in events)
    await emitter.close()
    # the model is free again: a new request runs normally
    out = await asyncio.wait_for(make(local_invoker).process(question="Hi", hyperparameters=SHORT), WAIT)
    assert out.text


# --------------------------------------------------------------------------- shared emitter


async def test_two_requests_share_one_emitter_and_are_told_apart():
    emitter = EventEmitter.with_stream_handler()
    lmrp = make(ScriptedLMInvoker(["Blue", " it is"], delay=0.001))
    t1 = asyncio.create_task(lmrp.process(question="Name a color.", hyperparameters=SHORT, event_emitter=emitter))
    t2 = asyncio.create_task(lmrp.process(question="Name an animal.", hyperparameters=SHORT, event_emitter=emitter))
    events = await collect(emitter)  # ends only after both requests finished
    o1, o2 = await asyncio.wait_for(asyncio.gather(t1, t2), WAIT)
    await emitter.close()
    ids = list(dict.fromkeys(e.metadata["request_id"] for e in events))
    assert len(ids) == 2
    by_req = {rid: [e for e in events if e.metadata["request_id"] == rid] for rid in ids}
    texts = sorted("".join(e.value for e in evs if e.type == "response") for evs in by_req.values())
    assert texts == sorted([o1.text, o2.text])
    for evs in by_req.values():
        assert [e.type for e in evs].count("done") == 1 and evs[-1].type == "done"
        assert len({e.metadata["block_id"] for e in evs if e.type == "response"}) == 1
    blocks = [{e.metadata["block_id"] for e in evs if e.type == "response"} for evs in by_req.values()]
    assert blocks[0].isdisjoint(blocks[1])


# --------------------------------------------------------------------------- construction


def test_build_processor_with_unknown_provider_lists_known_ones():
    with pytest.raises(ConfigurationError) as info:
        build_lm_request_processor("nope/x", user_template="{q}")
    msg = str(info.value)
    assert "nope" in msg
    for provider in ("local", "openai", "anthropic", "google", "openai-compatible"):
        assert provider in PROVIDERS and provider in msg


def test_build_processor_bad_parser_type_and_model_id():
    with pytest.raises(ConfigurationError, match="output_parser_type"):
        build_lm_request_processor("local/smollm2-135m", output_parser_type="xml")
    with pytest.raises(ConfigurationError, match="provider/model"):
        build_lm_request_processor("no-slash")


def test_build_processor_json():
    lmrp = build_lm_request_processor(
        "local/smollm2-135m",
        system_template="S",
        user_template="{q}",
        key_defaults={"q": "d"},
        output_parser_type="json",
    )
    assert isinstance(lmrp.output_parser, JSONOutputParser)
    assert [m.text for m in lmrp.prompt_builder.format()] == ["S", "d"]


def test_processor_rejects_wrong_argument_types():
    with pytest.raises(ConfigurationError):
        LMRequestProcessor("not a builder", ScriptedLMInvoker(["x"]))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LMRequestProcessor(PromptBuilder(user_template="{q}"), "not an invoker")  # type: ignore[arg-type]


def test_process_and_stream_take_the_same_parameters_keyword_only_after_prompt_kwargs():
    import inspect

    process = inspect.signature(LMRequestProcessor.process).parameters
    stream = inspect.signature(LMRequestProcessor.stream).parameters
    assert list(process) == list(stream)  # same names, same order
    assert [(p.kind, p.default) for p in process.values()] == [(p.kind, p.default) for p in stream.values()]
    kinds = [p.kind for name, p in process.items() if name not in ("self", "prompt_kwargs", "kwargs")]
    assert kinds and all(k is inspect.Parameter.KEYWORD_ONLY for k in kinds)


async def test_a_positional_argument_after_prompt_kwargs_is_refused_not_mis_bound():
    lmrp = make(ScriptedLMInvoker(["ok"]))
    emitter = EventEmitter.with_stream_handler()
    with pytest.raises(TypeError):
        lmrp.process({"question": "a"}, None, None, None, emitter)  # type: ignore[misc]
    with pytest.raises(TypeError):
        lmrp.stream({"question": "a"}, None, None, None, True, 5, emitter)  # type: ignore[misc]
    assert (await lmrp.process({"question": "a"})).text == "ok"
    await emitter.close()
