"""Pending tool approvals under attack (issue 31, items 3 and 8): a flood of unanswered approvals
stays bounded in count and bytes (memory and Redis) without locking anyone out, and a wrong
answer never uses up the right one."""

from __future__ import annotations

from typing import Any

import pytest

from lmstream.approval import ApprovalError, Decision, PendingAnswer, PendingStep
from lmstream.prompt import Message
from lmstream.protocols.ui_approvals import Continuation, InMemoryApprovalStore, take_decisions
from lmstream.types import ToolCall

pytest.importorskip("redis")

from lmstream.redis.approvals import RedisApprovalStore


def pending(chat: str, n: int, size: int = 100) -> PendingAnswer:
    step = PendingStep(
        [Message("user", ["x" * size]), Message("assistant", [ToolCall(f"call{n}", "add", {"a": 1})])],
        [ToolCall(f"call{n}", "add", {"a": 1})],
        {f"apr_{chat}_{n}": f"call{n}"},
        1,
    )
    return PendingAnswer(step, chat, f"msg_{chat}")


def answer(chat: str, n: int, call: str | None = None, message: str | None = None) -> Continuation:
    return Continuation(message or f"msg_{chat}", {f"apr_{chat}_{n}": (call or f"call{n}", Decision(True))})


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: Any) -> Any:
    if request.param == "memory":
        yield lambda **kw: InMemoryApprovalStore(**kw)
        return
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(request.getfixturevalue("redis_server").url)
    await r.flushdb()
    yield lambda **kw: RedisApprovalStore(r, prefix="t", **kw)
    await r.aclose()


async def test_a_wrong_answer_does_not_use_up_the_right_one(make_store: Any) -> None:
    store = make_store()
    await store.save(pending("c1", 1), ttl=60)
    for wrong_chat, cont in (
        ("other-chat", answer("c1", 1)),  # the right approval id, another chat's id
        ("c1", answer("c1", 1, call="call-wrong")),  # the right ids, another tool call id
        ("c1", answer("c1", 1, message="msg_wrong")),  # another message
    ):
        with pytest.raises(ApprovalError) as err:
            await take_decisions(store, wrong_chat, cont)
        assert err.value.status_code == 409
    taken, decisions = await take_decisions(store, "c1", answer("c1", 1))  # the rightful answer
    assert taken.chat_id == "c1" and decisions == {"call1": Decision(True)}
    with pytest.raises(ApprovalError, match="already answered"):
        await take_decisions(store, "c1", answer("c1", 1))


async def test_an_approval_flood_is_bounded_in_count_and_bytes_and_locks_nobody_out(make_store: Any) -> None:
    store = make_store(max_pending=20, max_bytes=200_000)
    for n in range(200):  # 200 unanswered approvals of ~10 kB in 200 chats: 2 MB asked
        await store.save(pending(f"flood{n}", n, 10_000), ttl=600)
    await store.save(pending("victim", 0, 100), ttl=600)  # someone's real question: never a 503
    if isinstance(store, InMemoryApprovalStore):
        assert len(store) <= 20 and store.bytes <= 200_000
    else:
        keys = [k async for k in store.redis.scan_iter("t:aprs:*")]
        sizes = [await store.redis.strlen(k) for k in keys]
        assert len(keys) <= 20 and sum(sizes) <= 200_000, (len(keys), sum(sizes))
    taken, _ = await take_decisions(store, "victim", answer("victim", 0))
    assert taken.chat_id == "victim"
    with pytest.raises(ApprovalError) as err:  # the oldest flood entries went first: 410, not a hang
        await take_decisions(store, "flood0", answer("flood0", 0))
    assert err.value.status_code in (409, 410)


async def test_one_chat_keeps_one_waiting_step(make_store: Any) -> None:
    store = make_store()
    for n in range(50):  # one chat asking again and again: only its newest question waits
        await store.save(pending("chat", n, 1000), ttl=600)
    if isinstance(store, InMemoryApprovalStore):
        assert len(store) == 1
    else:
        assert len([k async for k in store.redis.scan_iter("t:aprs:*")]) == 1
    with pytest.raises(ApprovalError) as err:
        await take_decisions(store, "chat", answer("chat", 0))
    assert err.value.status_code in (409, 410)
    taken, _ = await take_decisions(store, "chat", answer("chat", 49))
    assert taken.step.approvals == {"apr_chat_49": "call49"}


async def test_a_flood_by_one_key_pushes_out_its_own_steps_first() -> None:
    import asyncio

    from lmstream.cache import set_request_context

    store = InMemoryApprovalStore(max_pending=20, max_bytes=10_000_000)

    async def as_tenant(tenant: str, chat: str, n: int) -> None:
        set_request_context(tenant)  # what the server's auth middleware sets for each request
        await store.save(pending(chat, n, 1000), ttl=600)

    await asyncio.create_task(as_tenant("key-b", "victim", 0))  # someone's real question, asked first
    for n in range(100):  # then key A floods
        await asyncio.create_task(as_tenant("key-a", f"flood{n}", n))
    assert len(store) <= 20
    taken, _ = await take_decisions(store, "victim", answer("victim", 0))
    assert taken.chat_id == "victim"
