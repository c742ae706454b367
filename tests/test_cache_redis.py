"""The response cache on Redis (issue 29): two nodes (two caches, two processors) on one real
redis-server and one upstream that counts its requests (tests/wire/server.py).

Node B hits node A's entry, and joins a generation running on node A by reading its Redis
stream; the keys live under `lmstream:cache:*` with a TTL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("redis")

from lmstream import EventType, LMRequestProcessor, PromptBuilder, ResponseCache, build_lm_invoker
from lmstream.types import LMOutput
from tests.redis_server import RedisServer
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

T0 = {"temperature": 0}
TEXT = ("Redis", " keeps", " the", " answer", " for", " every", " node", ".")


def _node(srv: WireServer, url: str) -> LMRequestProcessor[LMOutput]:
    inv = build_lm_invoker(
        "openai-chat/gpt-4o-mini", credentials={"api_key": "sk-test"}, config={"base_url": srv.base_url + "/v1"}
    )
    return LMRequestProcessor(PromptBuilder(user_template="{q}"), inv, cache=ResponseCache(url, ttl=120))


def _shape(events: list[Any]) -> list[tuple[str, Any, int | None]]:
    blocks: dict[str, int] = {}
    out = []
    for e in events:
        bid = e.metadata.get("block_id")
        value = e.metadata.get("finish_reason") if e.type == EventType.DONE else e.value
        out.append((str(e.type), value, blocks.setdefault(bid, len(blocks)) if bid else None))
    return out


async def _run(lmrp: LMRequestProcessor[LMOutput], q: str = "hi") -> tuple[list[Any], LMOutput]:
    async with lmrp.stream(q=q, hyperparameters=T0) as s:
        events = [e async for e in s]
    return events, await s.result()


async def test_node_b_hits_node_a_entry_and_the_keys_carry_a_ttl(r: Any, redis_server: RedisServer) -> None:
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT, reasoning_deltas=("hm",))))
        a, b = _node(srv, redis_server.url), _node(srv, redis_server.url)
        live, out_a = await _run(a)
        hit, out_b = await _run(b)
        assert len(srv.requests) == 1
        assert a.cache is not None and b.cache is not None
        await a.cache.aclose()
        await b.cache.aclose()
    assert out_a.cache == {"hit": False, "joined": False, "age": None}
    assert out_b.cache is not None and out_b.cache["hit"] and not out_b.cache["joined"]
    assert _shape(hit) == _shape(live) and out_b.text == "".join(TEXT)
    assert float(out_b.usage.cost or 0) == 0 and out_b.usage.saved_cost == out_a.usage.cost
    keys = sorted(k.decode() for k in await r.keys("*"))
    entries = [k for k in keys if k.startswith("lmstream:cache:entry:")]
    assert len(entries) == 1 and all(k.startswith("lmstream:cache:") for k in keys), keys
    assert 0 < await r.ttl(entries[0]) <= 120
    assert not [k for k in keys if k.startswith("lmstream:cache:lease:")]  # let go at the end
    for k in keys:
        assert await r.ttl(k) > 0, k  # nothing kept forever


async def test_node_b_joins_a_generation_running_on_node_a(r: Any, redis_server: RedisServer) -> None:
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT), delay_between=0.05))
        a, b = _node(srv, redis_server.url), _node(srv, redis_server.url)
        first = asyncio.create_task(_run(a))
        for _ in range(200):  # until node A's generation has streamed a few tokens
            await asyncio.sleep(0.01)
            if srv.requests and srv.requests[0].chunks_written >= 4:
                break
        runs_b = await asyncio.gather(*[_run(b) for _ in range(3)])
        live, out_a = await first
        assert len(srv.requests) == 1
        assert a.cache is not None and b.cache is not None
        assert a.cache.misses == 1 and b.cache.joins == 3 and b.cache.misses == 0
        await a.cache.aclose()
        await b.cache.aclose()
    for events, out_b in runs_b:
        assert out_b.cache is not None and out_b.cache["joined"] and not out_b.cache["hit"]
        assert _shape(events) == _shape(live)  # from the first event, though it joined late
        assert out_b.text == out_a.text == "".join(TEXT)
        assert float(out_b.usage.cost or 0) == 0


async def test_an_unreachable_redis_still_answers_without_the_cache() -> None:
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT)))
        node = _node(srv, "redis://127.0.0.1:9/0")
        _, out = await _run(node)
        _, out2 = await _run(node)
        assert out.text == out2.text == "".join(TEXT) and len(srv.requests) == 2
    assert "127.0.0.1:9" not in repr(node.cache)


async def test_a_generation_goes_on_for_readers_on_another_node_and_stops_when_all_leave(
    r: Any, redis_server: RedisServer
) -> None:
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT), delay_between=0.05))
        a, b = _node(srv, redis_server.url), _node(srv, redis_server.url)

        async def leave_after(lmrp: LMRequestProcessor[LMOutput], tokens: int, q: str = "hi") -> int:
            seen = 0
            async with lmrp.stream(q=q, hyperparameters=T0) as s:
                async for e in s:
                    if e.type == "response":
                        seen += 1
                        if seen == tokens:
                            return seen
            return seen

        # node A's only reader leaves at token 3; node B's reader, which joined, gets everything
        first = asyncio.create_task(leave_after(a, 3))
        assert await srv.wait_for(lambda s: bool(s.requests) and s.requests[0].chunks_written >= 2, timeout=5.0)
        events, out_b = await _run(b)
        assert await first == 3
        assert out_b.text == "".join(TEXT) and out_b.cache is not None and out_b.cache["joined"]
        assert [e.value for e in events if e.type == "response"] == list(TEXT)
        assert len(srv.requests) == 1 and not srv.requests[0].disconnected

        # both leave (another question): the upstream call is closed, and nothing is stored
        a2, b2 = _node(srv, redis_server.url), _node(srv, redis_server.url)
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT * 20), delay_between=0.05))  # 8 s: still running
        first = asyncio.create_task(leave_after(a2, 2, "again"))
        assert await srv.wait_for(lambda s: len(s.requests) == 2 and s.requests[1].chunks_written >= 2, timeout=5.0)
        assert await leave_after(b2, 1, "again") == 1  # node B's reader joined node A's run
        await first
        assert await srv.wait_for(lambda s: s.requests[1].disconnected, timeout=5.0)
        assert len(srv.requests) == 2
        for n in (a, b, a2, b2):
            assert n.cache is not None
            await n.cache.aclose()
    assert b2.cache is not None and b2.cache.joins == 1


async def test_a_worker_keys_a_queued_job_by_the_tenant_the_web_node_saw() -> None:
    """`lmstream serve --queue`: answers run on `lmstream worker`, whose own cache takes the tenant
    and the no-cache the web node put in the job (`lmstream.cache.JOB_KEY`)."""
    from lmstream import EventEmitter
    from lmstream.cache import JOB_KEY
    from lmstream.protocols.ui_approvals import InMemoryApprovalStore
    from lmstream.redis.cli import chat_jobs
    from lmstream.testing import ScriptedLMInvoker

    inv = ScriptedLMInvoker(["Queued", " answer"])
    proc = LMRequestProcessor(PromptBuilder(), inv, cache=ResponseCache())
    handle = chat_jobs(proc, InMemoryApprovalStore())

    async def job(tenant: str, bypass: bool = False) -> LMOutput:
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Queued?"}]}
        chat = {"id": "c1", "messages": [message], "hyperparameters": T0, JOB_KEY: {"tenant": tenant, "bypass": bypass}}
        emitter = EventEmitter.with_stream_handler()
        out = await handle({"chat": chat, "max_messages": 500}, emitter)
        await emitter.close()
        return out  # type: ignore[no-any-return]

    first, again = await job("tenant-a"), await job("tenant-a")
    assert len(inv.calls) == 1 and again.cache is not None and again.cache["hit"] and again.text == first.text
    other = await job("tenant-b")  # another tenant: never tenant A's answer
    assert len(inv.calls) == 2 and other.cache is not None and not other.cache["hit"]
    fresh = await job("tenant-a", bypass=True)
    assert len(inv.calls) == 3 and fresh.cache is None
