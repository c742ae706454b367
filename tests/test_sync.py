"""The synchronous API: `process_sync`, `stream_sync` (a real stream), `invoker.stream_sync`.

The replay server runs in its own thread (`WireServer.start_in_thread`), so a test may block
its own thread, or its own event loop, in a sync call while the server keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lmstream import LMRequestProcessor, PromptBuilder, ProviderError, StreamInterruptedError
from lmstream.sync import _LOOP, run_sync
from tests.wire import fixtures as fx
from tests.wire.providers import PROVIDERS, TEXT, invoker
from tests.wire.server import Script, WireServer

P = PROVIDERS["openai-chat"]


#: invokers a test made: their pooled connections live on the background loop, so the test
#: closes them there when it ends (a socket left to the garbage collector warns at exit)
_MADE: list[Any] = []


@pytest.fixture
def srv() -> Iterator[WireServer]:
    with WireServer() as server:
        yield server
        while _MADE:
            run_sync(_MADE.pop().aclose)


def _invoker(srv: WireServer) -> Any:
    inv = invoker(P, srv)
    _MADE.append(inv)
    return inv


def _lmrp(srv: WireServer) -> LMRequestProcessor[Any]:
    return LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(srv))


def _slow(delay: float = 0.2) -> Script:
    return Script(chunks=P.text(TEXT), delay_between=delay)


def test_events_arrive_as_produced_not_after_the_end(srv: WireServer) -> None:
    srv.enqueue(_slow(0.2))  # 5 deltas, 0.2 s apart: about 1 s from first to last
    lmrp = _lmrp(srv)
    seen: list[tuple[float, str, bool]] = []
    with lmrp.stream_sync(q="Tokyo?") as stream:
        for event in stream:
            seen.append((time.monotonic(), event.type, srv.requests[0].completed))
        output = stream.result()
    end = time.monotonic()
    first_at, _, server_done_then = next(s for s in seen if s[1] == "response")
    assert not server_done_then, "the first token came only after the server had sent the whole answer"
    assert end - first_at > 0.6
    assert [t for _, t, _ in seen if t == "response"] == ["response"] * len(TEXT)
    assert seen[-1][1] == "done" and output.text == "".join(TEXT)
    assert output.usage.input_tokens == 11 and output.usage.cost is not None


async def test_works_inside_a_running_event_loop(srv: WireServer) -> None:
    assert asyncio.get_running_loop().is_running()  # as in Jupyter, or a FastAPI sync route
    srv.enqueue(Script(chunks=P.text(TEXT)), Script(chunks=P.text(TEXT)), Script(chunks=P.text(TEXT)))
    lmrp = _lmrp(srv)
    out = lmrp.process_sync(q="one")
    assert out.text == "".join(TEXT)
    with lmrp.stream_sync(q="two") as stream:
        sync_types = [e.type for e in stream]
    async with lmrp.stream(q="three") as astream:  # the same events as the async API
        async_types = [e.type async for e in astream]
    assert sync_types == async_types and sync_types[-1] == "done"


def test_eight_threads_at_once(srv: WireServer) -> None:
    arrivals: list[float] = []
    script = _slow(0.2)  # each answer takes about 0.8 s

    def answer(req: Any) -> Script:
        arrivals.append(time.monotonic())
        return script

    srv.responder = answer
    lmrp = _lmrp(srv)

    def one(i: int) -> tuple[str, str, set[str]]:
        if i % 2:
            return lmrp.process_sync(q=f"q{i}").text, "", set()
        with lmrp.stream_sync(q=f"q{i}") as s:
            events = list(s)
        text = "".join(e.value for e in events if e.type == "response")
        return text, events[-1].type, {e.metadata["request_id"] for e in events}

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(text == "".join(TEXT) for text, _, _ in results)
    streamed = [r for r in results if r[1]]
    assert all(last == "done" and len(ids) == 1 for _, last, ids in streamed)
    assert len(set().union(*(ids for _, _, ids in streamed))) == len(streamed)  # no events crossed over
    assert len(srv.requests) == 8
    # all 8 were at the server while the first answer was still streaming: they ran at once
    assert max(arrivals) - min(arrivals) < 0.8, f"the requests did not overlap: {arrivals}"


def test_ctrl_c_mid_stream_closes_the_upstream(srv: WireServer) -> None:
    srv.enqueue(Script(chunks=P.text(TEXT), stall_after=3))  # the role chunk, two deltas, then silence
    lmrp = _lmrp(srv)
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    got: list[str] = []
    with pytest.raises(KeyboardInterrupt), lmrp.stream_sync(q="Tokyo?") as stream:
        for event in stream:
            if event.type == "response":
                got.append(event.value)
                if len(got) == 2:  # the next wait blocks: a real SIGINT interrupts it
                    assert main is not None
                    threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()
    assert got == list(TEXT[:2])
    assert srv.wait_for_sync(lambda s: s.disconnects == 1, 3.0), "the provider connection stayed open"
    assert srv.requests[0].outcome == "client-closed"


def test_leaving_the_block_early_closes_the_upstream(srv: WireServer) -> None:
    srv.enqueue(_slow(0.5))
    lmrp = _lmrp(srv)
    with lmrp.stream_sync(q="Tokyo?") as stream:
        first = next(e for e in stream if e.type == "response")
    assert first.value == TEXT[0]
    assert srv.wait_for_sync(lambda s: s.disconnects == 1, 3.0)


def test_a_failure_raises_the_typed_exception_in_the_callers_thread(srv: WireServer) -> None:
    srv.enqueue(
        Script(status=400, body=fx.openai_error_for(400)),
        Script(status=400, body=fx.openai_error_for(400)),
        Script(chunks=P.text(TEXT), drop_after=3),
    )
    lmrp = _lmrp(srv)
    with pytest.raises(ProviderError) as err:
        lmrp.process_sync(q="bad")
    assert err.value.status_code == 400
    events = []
    with pytest.raises(ProviderError), lmrp.stream_sync(q="bad") as stream:
        for event in stream:
            events.append(event)
    assert events[-1].type == "error" and events[-1].metadata["status_code"] == 400
    with pytest.raises(StreamInterruptedError) as broke, lmrp.stream_sync(q="cut") as stream:
        for _ in stream:
            pass
    assert broke.value.partial_output.text == "".join(TEXT[:2])


def test_invoker_stream_sync_and_invoke_sync(srv: WireServer) -> None:
    srv.enqueue(Script(chunks=P.text(TEXT)), Script(chunks=P.text(TEXT)))
    inv = _invoker(srv)
    with inv.stream_sync([{"role": "user", "content": "Hi"}]) as stream:
        texts = list(stream.text())
    assert texts == list(TEXT) and stream.result().text == "".join(TEXT)
    assert inv.invoke_sync("Hi").text == "".join(TEXT)


def _sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


async def _other_tasks() -> int:
    """Tasks left on the background loop, after a moment for asyncio's own async-generator
    finalizers (it closes a collected generator in a task of its own)."""
    for _ in range(50):
        if not asyncio.all_tasks() - {asyncio.current_task()}:
            return 0
        await asyncio.sleep(0.02)
    return len(asyncio.all_tasks() - {asyncio.current_task()})


def test_nothing_leaks_after_100_calls(srv: WireServer) -> None:
    srv.repeat_last = True
    srv.enqueue(Script(chunks=P.text(TEXT)))
    lmrp = _lmrp(srv)
    lmrp.process_sync(q="warm up")  # starts the loop thread and the price table
    run_sync(lmrp.lm_invoker.aclose)  # idle pooled connections are no leak: count without them
    time.sleep(0.2)
    threads, sockets = threading.active_count(), _sockets()
    for i in range(100):
        if i % 3 == 0:
            assert lmrp.process_sync(q="x").text == "".join(TEXT)
        elif i % 3 == 1:
            with lmrp.stream_sync(q="x") as s:
                assert list(s)[-1].type == "done"
        else:
            with lmrp.stream_sync(q="x") as s:  # left early: cancelled, connection closed
                next(iter(s))
    srv.wait_for_sync(lambda s: all(r.outcome for r in s.requests), 3.0)
    assert threading.active_count() == threads
    assert run_sync(_other_tasks) == 0
    run_sync(lmrp.lm_invoker.aclose)  # the pool's idle connections go; anything left leaked
    deadline = time.monotonic() + 3.0
    while _sockets() > sockets and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sockets() <= sockets
    assert _LOOP.running and len(srv.requests) == 101


def test_a_sync_call_from_the_loop_thread_is_refused(srv: WireServer) -> None:
    lmrp = _lmrp(srv)

    async def inside() -> str:
        try:
            lmrp.process_sync(q="x")
        except Exception as exc:
            return str(exc)
        return "no error"

    assert "own loop thread" in run_sync(inside)
    assert srv.requests == []


def _sigint_in(seconds: float) -> None:
    main = threading.main_thread().ident
    assert main is not None and main == threading.get_ident()
    threading.Timer(seconds, signal.pthread_kill, (main, signal.SIGINT)).start()


def test_ctrl_c_during_process_sync_closes_the_upstream(srv: WireServer) -> None:
    srv.enqueue(Script(chunks=P.text(TEXT), stall_after=3))
    lmrp = _lmrp(srv)
    _sigint_in(0.5)
    with pytest.raises(KeyboardInterrupt):
        lmrp.process_sync(q="Tokyo?")
    assert srv.wait_for_sync(lambda s: s.disconnects == 1, 3.0)


def test_a_stream_dropped_without_with_is_cancelled(srv: WireServer) -> None:
    srv.enqueue(_slow(0.5))
    lmrp = _lmrp(srv)
    for event in lmrp.stream_sync(q="Tokyo?"):  # no `with`: the stream object is dropped at `break`
        if event.type == "response":
            break
    assert srv.wait_for_sync(lambda s: s.disconnects == 1, 3.0)


def test_ctrl_c_stops_local_generation(local_invoker: Any) -> None:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), local_invoker)
    got = 0
    with (
        pytest.raises(KeyboardInterrupt),
        lmrp.stream_sync(q="Write a long story.", hyperparameters={"max_tokens": 400}) as s,
    ):
        for event in s:
            if event.type == "response":
                got += 1
                if got == 3:
                    _sigint_in(0.05)
    stats = local_invoker.engine_stats()
    assert got >= 3 and stats is not None
    deadline = time.monotonic() + 5
    while local_invoker.engine_stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert local_invoker.engine_stats()["running"] == 0, "the sequence kept generating after Ctrl-C"
