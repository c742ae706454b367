"""The embedded model serving many streams at once (continuous batching on llama.cpp).

Real model throughout; short generations. Engines are per settings, so tests that need a
clean or small engine use settings of their own (a distinct `n_ctx`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from lmstream import ContextOverflowError, LocalLMInvoker, Message
from lmstream.events import Event

GREEDY = {"temperature": 0.0}
QUESTIONS = [
    "Tell me about Tokyo.",
    "What is a volcano?",
    "Describe a cat.",
    "Why is the sky blue?",
    "Name a famous painter.",
    "What do bees make?",
    "How do trains work?",
    "What is rain?",
]


@pytest.fixture(scope="module")
def eight() -> LocalLMInvoker:
    """The default engine settings (parallel=8, n_ctx 2048 per sequence), loaded once."""
    inv = LocalLMInvoker()
    inv.load()
    return inv


class Run:
    """One request's events with arrival times, its result, and when it finished."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Event]] = []
        self.output: Any = None
        self.error: BaseException | None = None

    @property
    def text(self) -> str:
        return "".join(e.value for _, e in self.events if e.type == "response")

    def first(self, type_: str = "response") -> float:
        return next(t for t, e in self.events if e.type == type_)

    def of(self, type_: str) -> list[Any]:
        return [e.value for _, e in self.events if e.type == type_]

    @property
    def ended(self) -> float:
        return self.events[-1][0]


async def run(inv: LocalLMInvoker, question: str, params: dict[str, Any], cancel_after: int | None = None) -> Run:
    """Stream one request through `invoker.stream()`; `cancel_after` text deltas, leave early."""
    r = Run()
    try:
        async with inv.stream([Message.user(question)], params) as stream:
            seen = 0
            async for event in stream:
                r.events.append((time.perf_counter(), event))
                seen += event.type == "response"
                if cancel_after is not None and seen >= cancel_after:
                    return r
            r.output = await stream.result()
    except Exception as exc:
        r.error = exc
    return r


async def test_eight_concurrent_streams_all_start_before_any_finishes(eight):
    runs = await asyncio.gather(*[run(eight, q, {"max_tokens": 24, **GREEDY}) for q in QUESTIONS])
    assert all(r.error is None for r in runs), [r.error for r in runs]
    assert max(r.first() for r in runs) < min(r.ended for r in runs)
    for r in runs:
        assert [e.type for _, e in r.events].count("done") == 1 and r.events[-1][1].type == "done"
        assert r.text == r.output.text and r.output.usage.output_tokens == 24
        assert "status" not in [e.type for _, e in r.events]  # a free sequence: no queue feedback


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
    {"type": "object", "properties": {"is_open": {"type": "boolean"}}, "required": ["is_open"]},
    {
        "type": "object",
        "properties": {"year": {"type": "integer"}, "ok": {"type": "boolean"}},
        "required": ["year", "ok"],
    },
    {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}}, "required": ["colour"]},
]


async def test_four_concurrent_schemas_each_get_valid_json_of_their_own():
    invokers = [LocalLMInvoker(response_schema=s) for s in SCHEMAS]
    outs = await asyncio.gather(*[inv.invoke("Answer in JSON.", {"max_tokens": 40, **GREEDY}) for inv in invokers])
    for schema, out in zip(SCHEMAS, outs, strict=True):
        value = json.loads(out.text)
        assert sorted(value) == sorted(schema["required"]), (schema, out.text)
        assert out.structured_output == value


async def test_greedy_alone_and_beside_seven_others_give_the_same_tokens(eight):
    """The determinism statement of docs/embedded.md: identical text, alone or batched with 7 others."""
    params = {"max_tokens": 48, **GREEDY}
    alone = await run(eight, QUESTIONS[0], params)
    crowd = await asyncio.gather(*[run(eight, q, params) for q in QUESTIONS])
    assert alone.output.usage.output_tokens == crowd[0].output.usage.output_tokens == 48
    assert crowd[0].text == alone.text


async def test_cancel_one_of_four_the_others_finish_and_a_queued_one_takes_its_sequence():
    inv = LocalLMInvoker(parallel=4, n_ctx=768)
    long = {"max_tokens": 64, **GREEDY}
    tasks = [
        asyncio.create_task(run(inv, q, long, cancel_after=3 if i == 0 else None)) for i, q in enumerate(QUESTIONS[:4])
    ]
    await asyncio.sleep(0.05)  # the four hold every sequence; the fifth queues
    waiting = asyncio.create_task(run(inv, QUESTIONS[4], {"max_tokens": 4, **GREEDY}))
    cancelled, *others = await asyncio.gather(*tasks)
    late = await waiting
    assert cancelled.output is None and len(cancelled.of("response")) == 3
    for r in others:
        assert r.error is None and r.output.finish_reason == "length" and r.output.usage.output_tokens == 64
    assert late.of("status")[0] == {"state": "queued", "position": 1}
    assert late.of("status")[-1] == {"state": "running"}
    # the freed sequence went to the queued request at once, while the other three still ran
    assert late.first("status") < cancelled.ended + 5 and late.events[-1][1].type == "done"
    running_at = next(t for t, e in late.events if e.type == "status" and e.value["state"] == "running")
    assert running_at < min(r.ended for r in others)


async def test_hundred_cancel_start_cycles_leave_no_kv_cells_in_use():
    inv = LocalLMInvoker(parallel=2, n_ctx=256)
    engine = inv.load()
    assert engine.cells_in_use() == 0
    for i in range(100):
        # even cycles leave after the first token, odd ones before it (queued or mid-prompt)
        if i % 2 == 0:
            r = await run(inv, "Count to ten.", {"max_tokens": 50, **GREEDY}, cancel_after=1)
            assert len(r.of("response")) == 1
        else:
            task = asyncio.create_task(run(inv, "Count to ten.", {"max_tokens": 50, **GREEDY}))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    deadline = time.monotonic() + 30
    while engine.stats()["running"] or engine.stats()["queued"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert engine.cells_in_use() == 0


async def test_queue_is_fifo_with_positions_then_running():
    inv = LocalLMInvoker(parallel=2, n_ctx=320)
    inv.load()
    tasks = []
    for q, n in zip(QUESTIONS[:4], (6, 24, 12, 6), strict=True):  # the first two end at different steps
        tasks.append(asyncio.create_task(run(inv, q, {"max_tokens": n, **GREEDY})))
        await asyncio.sleep(0.01)  # arrival order is the queue order
    runs = await asyncio.gather(*tasks)
    assert [r.of("status") for r in runs[:2]] == [[], []]
    assert runs[2].of("status") == [{"state": "queued", "position": 1}, {"state": "running"}]
    assert runs[3].of("status") == [
        {"state": "queued", "position": 2},
        {"state": "queued", "position": 1},
        {"state": "running"},
    ]
    assert runs[2].first("response") < runs[3].first("response")
    for r in runs:  # status events come before any text and never count as the first token
        assert r.error is None and r.output.text == r.text
        assert all(t <= r.first("response") for t, e in r.events if e.type == "status")


async def test_same_system_prompt_reuses_cached_prefix(eight):
    system = "You are a careful travel guide. " + " ".join(f"Rule {i}: be kind and brief." for i in range(40))
    msgs = [Message.system(system), Message.user("Where should I go in spring?")]
    first = await eight.invoke(msgs, {"max_tokens": 4, **GREEDY})
    msgs2 = [Message.system(system), Message.user("And in winter?")]
    second = await eight.invoke(msgs2, {"max_tokens": 4, **GREEDY})
    assert first.usage.input_tokens > 300
    assert second.usage.cached_tokens >= 300 > (first.usage.cached_tokens or 0)
    assert second.usage.input_tokens - second.usage.cached_tokens < 40  # only the new turn was evaluated
    assert second.time_to_first_token < first.time_to_first_token


async def test_prompt_over_the_window_is_a_context_overflow_error_and_the_next_request_runs():
    inv = LocalLMInvoker(parallel=1, n_ctx=256)
    with pytest.raises(ContextOverflowError) as info:
        await inv.invoke("word " * 400, {"max_tokens": 20})
    err = info.value
    assert err.prompt_tokens is not None and err.prompt_tokens > 256
    assert (err.max_tokens, err.context_window, err.retryable) == (20, 256, False)
    assert "n_ctx" in str(err)
    out = await inv.invoke("Say hi.", {"max_tokens": 3, **GREEDY})
    assert out.text and out.usage.output_tokens == 3
    # a prompt that fits but leaves less room than max_tokens stops at the window
    counting = "Continue counting: " + ", ".join(str(i) for i in range(1, 50)) + ","
    edge = await inv.invoke(counting, {"max_tokens": 200, **GREEDY})
    assert edge.usage.input_tokens > 200 and edge.finish_reason == "length"
    assert edge.usage.input_tokens + edge.usage.output_tokens == 257  # the last token needs no cell


async def test_stop_sequences_and_max_tokens(eight):
    base = await eight.invoke("Tell me about Tokyo.", {"max_tokens": 30, **GREEDY})
    assert base.usage.output_tokens == 30 and base.finish_reason == "length"
    words = base.text.split()
    stop = " ".join(words[4:6])
    cut = await eight.invoke("Tell me about Tokyo.", {"max_tokens": 30, "stop": [stop, "zzzz"], **GREEDY})
    assert cut.finish_reason == "stop"
    assert cut.text == base.text[: base.text.index(stop)] and stop not in cut.text


async def test_same_seed_same_text_alone_twice(eight):
    params = {"max_tokens": 24, "temperature": 0.9, "seed": 1234}
    a = await eight.invoke("Write a word.", params)
    b = await eight.invoke("Write a word.", params)
    assert a.text == b.text and a.usage.output_tokens == b.usage.output_tokens


def test_threads_are_part_of_the_engine_key():
    one = LocalLMInvoker(parallel=1, n_ctx=128, n_threads=1)
    two = LocalLMInvoker(parallel=1, n_ctx=128, n_threads=2)
    e1, e2 = one.load(), two.load()
    assert e1 is not e2 and (e1.config.n_threads, e2.config.n_threads) == (1, 2)
    assert LocalLMInvoker(parallel=1, n_ctx=128, n_threads=1).load() is e1
    assert one.engine_stats() == {"parallel": 1, "running": 0, "queued": 0, "n_ctx": 128}


def test_a_request_whose_event_loop_is_gone_frees_its_sequence():
    """Abandoned, not cancelled: the loop that asked is closed, so nobody will ever read the
    answer. The engine notices when it cannot hand over the first output and frees the sequence."""
    from lmstream.invokers._llama.engine import _Sink
    from lmstream.invokers._llama.sampling import Sampling
    from lmstream.invokers._llama.scheduler import Job

    inv = LocalLMInvoker(parallel=1, n_ctx=192)
    engine = inv.load()
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    sink = _Sink(loop, queue)
    loop.close()
    tokens = engine.model.tokenize("<|im_start|>user\nWrite a long story.<|im_end|>\n", add_special=False)
    job = Job(tokens, Sampling(temperature=0.0).build(engine.model), 150, (), sink)
    engine.submit(job)
    deadline = time.monotonic() + 20  # 150 tokens would take far longer on this machine
    while not job.cancelled or engine.stats()["running"] or engine.stats()["queued"]:
        assert time.monotonic() < deadline, "the abandoned request kept its sequence"
        time.sleep(0.02)
    assert job.n_out < 20 and engine.cells_in_use() == 0


async def test_a_request_whose_sampling_fails_ends_alone_with_a_provider_error(eight):
    from lmstream import ProviderError
    from lmstream.invokers._llama.engine import DONE, sink_for
    from lmstream.invokers._llama.sampling import Sampler, Sampling
    from lmstream.invokers._llama.scheduler import Job

    class Broken(Sampler):
        def sample(self, ctx: Any, row: int) -> int:
            raise RuntimeError("broken sampler")

    engine = eight.load()
    real = Sampling(temperature=0.0).build(engine.model)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    tokens = engine.model.tokenize("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", add_special=False)
    job = Job(tokens, Broken(real.chain, None, real.n_vocab), 8, (), sink_for(queue))
    neighbour = asyncio.create_task(eight.invoke("Say hi.", {"max_tokens": 6, **GREEDY}))
    engine.submit(job)
    items = []
    while not items or items[-1] is not DONE:
        items.append(await asyncio.wait_for(queue.get(), 60))
    assert isinstance(items[-2], ProviderError) and "broken sampler" in str(items[-2])
    out = await neighbour
    assert out.usage.output_tokens == 6 and out.finish_reason == "length"
