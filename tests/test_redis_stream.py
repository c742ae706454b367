"""Redis transport + reader against a real redis-server: batching, exactly-once resume, TTL, gaps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("redis") if os.environ.get("CI", "").lower() != "true" else None

import redis.asyncio as aioredis  # noqa: E402

from lmstream import EventEmitter  # noqa: E402
from lmstream.errors import RedisUnavailableError, StreamGoneError  # noqa: E402
from lmstream.events import Event, EventLevel  # noqa: E402
from lmstream.redis import RedisEventHandler, RedisOptions, RedisStreamReader  # noqa: E402
from lmstream.redis.pipeline import SharedWriter  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def script(n_tokens: int, rid: str = "req_1") -> list[Event]:
    """A request's events: a status, text deltas, a tool call in the middle, done."""
    meta = {"request_id": rid, "block_id": "b1", "step": 1}
    evs = [Event("thinking about it", "status", metadata={"request_id": rid})]
    evs += [Event(f"tok{i} ", "response", metadata=meta) for i in range(n_tokens // 2)]
    evs.append(Event({"id": "c1", "name": "f", "arguments": {}}, "tool_call", metadata={"request_id": rid}))
    evs += [Event(f"tok{i} ", "response", metadata=meta) for i in range(n_tokens // 2, n_tokens)]
    evs.append(Event("", "done", metadata={"request_id": rid, "finish_reason": "stop"}))
    return evs


async def produce(r: aioredis.Redis, chat: str, events: list[Event], pace: float = 0.0, **kw: Any) -> RedisEventHandler:
    h = RedisEventHandler(r, chat, options=RedisOptions(**kw))
    em = EventEmitter([h])
    for i, ev in enumerate(events):
        await em.emit(ev)
        if pace and i % 7 == 0:
            await asyncio.sleep(pace)
    await h.aclose()
    return h


def same(a: list[Event], b: list[Event]) -> None:
    assert [(e.id, e.type, e.value, e.level, e.metadata) for e in a] == [
        (e.id, e.type, e.value, e.level, e.metadata) for e in b
    ]
    assert [e.timestamp for e in a] == [e.timestamp for e in b]


async def test_batched_entries_replay_everything_in_order(r: aioredis.Redis) -> None:
    evs = script(200)
    h = await produce(r, "c1", evs)
    entries = await r.xrange("lmstream:chat:c1")
    assert len(entries) == h.entries_written
    assert len(entries) < 40, "text deltas must be batched into few entries"
    assert entries[-1][1][b"t"] == b"1"
    items = [it async for it in RedisStreamReader(r).read("c1")]
    same([it.event for it in items], evs)
    assert len({it.id for it in items}) == len(items)
    assert items[-1].event.type == "done"


async def test_resume_exactly_once_from_every_position(r: aioredis.Redis) -> None:
    evs = script(60)
    await produce(r, "c2", evs, pace=0.002, max_batch=8)
    reader = RedisStreamReader(r)
    items = [it async for it in reader.read("c2")]
    entry_ids = {it.id.rsplit(":", 1)[0] for it in items}
    assert len(entry_ids) > 3, "the script must span several batched entries"
    assert any(not it.id.endswith(":0") for it in items), "positions inside a batch are exercised"
    for k, it in enumerate(items):
        rest = [x async for x in reader.read("c2", after=it.id)]
        assert [x.id for x in rest] == [x.id for x in items[k + 1 :]]
        same([x.event for x in rest], evs[k + 1 :])


async def test_live_reader_blocks_then_ends_after_done(r: aioredis.Redis) -> None:
    evs = script(80)
    reader = RedisStreamReader(r, block=0.2)

    async def consume(after_n: int | None) -> list[Event]:
        out: list[Event] = []
        async for it in reader.read("c3"):
            out.append(it.event)
        return out

    prod = asyncio.create_task(produce(r, "c3", evs, pace=0.01))
    await asyncio.sleep(0.05)
    got = await asyncio.wait_for(consume(None), 10)
    await prod
    same(got, evs)


async def test_ttl_set_and_no_stream_means_nothing(r: aioredis.Redis) -> None:
    await produce(r, "c4", script(10), ttl=120)
    ttl = await r.ttl("lmstream:chat:c4")
    assert 100 < ttl <= 120
    assert not await r.exists("lmstream:lease:c4"), "the lease is released after done"
    reader = RedisStreamReader(r)
    assert await reader.exists("c4")
    assert not await reader.exists("nochat")
    assert [it async for it in reader.read("nochat")] == []


async def test_trimmed_position_raises_stream_gone(r: aioredis.Redis) -> None:
    evs = script(400)
    await produce(r, "c5", evs, pace=0.002, max_batch=4, maxlen=8)
    assert await r.xlen("lmstream:chat:c5") < 40, "MAXLEN ~ trimmed the stream"
    first = (await r.xrange("lmstream:chat:c5", count=1))[0][0].decode()
    reader = RedisStreamReader(r)
    with pytest.raises(StreamGoneError):
        [it async for it in reader.read("c5", after="1-0:0")]
    with pytest.raises(StreamGoneError):  # a full replay would start in the middle: refuse
        [it async for it in reader.read("c5")]
    # the first surviving entry is still a valid position
    rest = [it async for it in reader.read("c5", after=f"{first}:0")]
    assert rest[-1].event.type == "done"
    with pytest.raises(StreamGoneError):
        [it async for it in reader.read("c5", after="garbage")]


async def test_gap_while_reading_is_detected(r: aioredis.Redis) -> None:
    """A reader paused past the cap must not jump over trimmed entries silently."""
    evs = script(100)
    await produce(r, "c6", evs, pace=0.002, max_batch=4, maxlen=None)
    reader = RedisStreamReader(r, page=2)
    gen = reader.read("c6")
    first = await gen.__anext__()
    await r.xtrim("lmstream:chat:c6", maxlen=3, approximate=False)
    with pytest.raises(StreamGoneError):
        async for _ in gen:
            pass
    assert first.event.type == "status"


async def test_expired_stream_raises_stream_gone(r: aioredis.Redis) -> None:
    await produce(r, "c7", script(10))
    items = [it async for it in RedisStreamReader(r).read("c7")]
    await r.delete("lmstream:chat:c7")  # what EXPIRE does when the TTL runs out
    with pytest.raises(StreamGoneError):
        [it async for it in RedisStreamReader(r).read("c7", after=items[2].id)]


async def test_dead_producer_ends_stream_with_error_within_lease(r: aioredis.Redis) -> None:
    h = RedisEventHandler(r, "c8", options=RedisOptions(lease=1.0))
    em = EventEmitter([h])
    for ev in script(10)[:5]:
        await em.emit(ev)
    await asyncio.sleep(0.05)
    h._task.cancel()  # the producer vanishes: no more renewals, no done  # type: ignore[union-attr]
    reader = RedisStreamReader(r, options=RedisOptions(lease=1.0))
    t0 = asyncio.get_running_loop().time()
    items = [it async for it in reader.read("c8")]
    assert items[-1].event.type == "error"
    assert items[-1].event.level == EventLevel.ERROR
    assert "lease expired" in items[-1].event.value
    assert items[-1].event.metadata["request_id"] == "req_1"
    assert asyncio.get_running_loop().time() - t0 < 1.5
    assert len(items) == 6


async def test_resume_after_producer_process_exited(r: aioredis.Redis, redis_server: RedisServer) -> None:
    code = (
        "import asyncio, redis.asyncio as R\n"
        "from lmstream import EventEmitter\n"
        "from tests.test_redis_stream import produce, script\n"
        "async def main():\n"
        f"    c = R.Redis.from_url({redis_server.url!r})\n"
        "    h = await produce(c, 'c9', script(50))\n"
        "    print(h.entries_written)\n"
        "    await c.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    reader = RedisStreamReader(r)
    items = [it async for it in reader.read("c9")]
    assert len(items) == 53 and items[-1].event.type == "done"
    rest = [it async for it in reader.read("c9", after=items[20].id)]
    assert [x.id for x in rest] == [x.id for x in items[21:]]
    assert await r.ttl("lmstream:chat:c9") > 3000


async def test_commands_per_request_far_fewer_than_tokens(r: aioredis.Redis) -> None:
    n = 500
    h = await produce(r, "c10", script(n), pace=0.001)
    stats = {k[len("cmdstat_") :]: v["calls"] for k, v in (await r.info("commandstats")).items()}
    # one EVALSHA per flush is all the client sends (counted by Redis itself), one round trip each,
    # with the PUBLISH announcing the entry in the same round trip
    issued = stats.get("evalsha", 0) + stats.get("eval", 0)
    assert issued == h.commands_sent
    assert SharedWriter.of(r).round_trips == issued, "one chat: each round trip carries its one flush"
    assert stats.get("publish", 0) == h.entries_written, "one announcement per flush that appended"
    assert issued < n / 5, f"{issued} commands for {n} tokens"
    # and what the script runs inside Redis stays well under one command per token too
    inner = sum(stats.get(c, 0) for c in ("xadd", "get", "set", "del", "expire", "pexpire"))
    assert issued + inner < n / 2, stats


async def test_redis_down_is_a_clear_error() -> None:
    from tests.redis_server import free_port

    c = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        with pytest.raises(RedisUnavailableError, match=r"Redis at redis://127\.0\.0\.1"):
            await asyncio.wait_for(RedisStreamReader(c).exists("x"), 5)
        with pytest.raises(RedisUnavailableError):
            await asyncio.wait_for(anext(RedisStreamReader(c).read("x")), 5)
        errors: list[Exception] = []
        h = RedisEventHandler(c, "x", on_error=errors.append)
        h.emit_nowait(Event("a", "status"))
        await asyncio.wait_for(h.aclose(), 5)
        assert isinstance(h.error, RedisUnavailableError) and errors == [h.error]
    finally:
        await c.aclose()


@pytest.mark.parametrize("multiplex", [False, True])
async def test_redis_restart_mid_read_errors_then_recovers(multiplex: bool) -> None:
    with RedisServer() as srv:
        c = aioredis.Redis.from_url(srv.url, socket_connect_timeout=1, socket_timeout=10)
        reader = RedisStreamReader(c, block=0.5, multiplex=multiplex)
        try:
            h = RedisEventHandler(c, "live")
            await h.start()
            h.emit_nowait(Event("a", "status", metadata={"request_id": "r"}))
            got: list[Event] = []

            async def follow() -> None:
                async for it in reader.read("live"):
                    got.append(it.event)

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            srv.stop()  # Redis dies while the reader blocks in XREAD
            with pytest.raises(RedisUnavailableError, match="Redis at"):
                await asyncio.wait_for(task, 5)
            assert [e.value for e in got] == ["a"]
            with contextlib.suppress(Exception):
                await h.aclose(timeout=1)
            srv.start()  # back (empty: no persistence): the same client works again
            prod = asyncio.create_task(produce(c, "after", script(10), pace=0.01))
            await asyncio.sleep(0.01)
            assert len([it async for it in reader.read("after")]) == 13
            await prod
        finally:
            await reader.aclose()
            await c.aclose()


async def test_newer_request_fences_off_the_older_producer(r: aioredis.Redis) -> None:
    errors: list[Exception] = []
    old = RedisEventHandler(r, "cf", on_error=errors.append)
    await old.start()
    old.emit_nowait(Event("old-1", "status", metadata={"request_id": "old"}))
    await asyncio.sleep(0.05)
    new_events = script(20, rid="new")
    new = RedisEventHandler(r, "cf")
    await new.start()  # takes the chat over (e.g. on another node)
    old.emit_nowait(Event("old-2", "status", metadata={"request_id": "old"}))
    old.emit_nowait(Event("", "error", EventLevel.ERROR, {"request_id": "old"}))
    await old.aclose()
    assert isinstance(old.error, StreamGoneError) and errors == [old.error]
    em = EventEmitter([new])
    for ev in new_events:
        await em.emit(ev)
    await new.aclose()
    same([it.event async for it in RedisStreamReader(r).read("cf")], new_events)


def test_import_lmstream_does_not_import_redis() -> None:
    code = "import sys, lmstream, lmstream.redis; assert 'redis' not in sys.modules, 'redis imported'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("multiplex", [False, True])
async def test_many_live_readers_on_one_client(r: aioredis.Redis, redis_server: RedisServer, multiplex: bool) -> None:
    """More live readers than redis-py's default pool (100) on the client `connect()` makes; with
    `multiplex=True` they share one connection that never blocks (notified reads: see `StreamHub`)."""
    from lmstream.redis import connect

    c = connect(redis_server.url)
    reader = RedisStreamReader(c, block=0.5, multiplex=multiplex)
    try:
        handlers = [RedisEventHandler(c, f"m{i}") for i in range(150)]
        for h in handlers:
            await h.start()

        async def follow(i: int) -> list[str]:
            return [it.id async for it in reader.read(f"m{i}")]

        tasks = [asyncio.create_task(follow(i)) for i in range(150)]
        samples: list[int] = []  # clients blocked in XREAD, until every reader waits
        async with asyncio.timeout(10):
            while not samples or samples[-1] < (0 if multiplex else 150):
                samples.append(sum(1 for cl in await r.client_list() if "b" in cl["flags"]))
                await asyncio.sleep(0.05)
            while reader.hub is not None and len(reader.hub.followers) < 150:
                await asyncio.sleep(0.05)
        for _ in range(5):
            samples.append(sum(1 for cl in await r.client_list() if "b" in cl["flags"]))
            await asyncio.sleep(0.02)
        blocked = max(samples)
        evs = script(40)
        for k in range(0, len(evs), 6):  # several entries per stream, all streams at once
            for h in handlers:
                for ev in evs[k : k + 6]:
                    h.emit_nowait(ev)
            await asyncio.sleep(0.01)
        for h in handlers:
            await h.aclose()
        got = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert [len(ids) for ids in got] == [43] * 150
        assert all(len(set(ids)) == 43 for ids in got)
        entries = sum(h.entries_written for h in handlers)
        if multiplex:
            assert reader.hub is not None
            assert blocked == 0, "no connection blocks: the hub reads what producers announce"
            assert reader.hub.reads < entries / 5, (reader.hub.reads, entries)
            assert reader.hub.full_reads < reader.hub.reads / 2, "most reads are of the announced streams only"
        else:
            assert blocked == 150
    finally:
        await reader.aclose()
        await c.aclose()


class FlakyReplies:
    """The client, except that pipelines fail in turn as `plan` says: ``"reply"`` runs the commands
    and then loses the reply, ``"request"`` loses the request before Redis sees it, ``"ok"`` works."""

    def __init__(self, redis: aioredis.Redis, plan: list[str]) -> None:
        self._redis = redis
        self.plan = plan
        self.pipelines = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    def pipeline(self, **kwargs: Any) -> Any:
        import redis.exceptions as rex

        pipe = self._redis.pipeline(**kwargs)
        mode = self.plan[self.pipelines % len(self.plan)]
        self.pipelines += 1
        execute = pipe.execute

        async def flaky(*args: Any, **kw: Any) -> Any:
            if mode == "request":
                raise rex.ConnectionError("connection reset before the request arrived")
            res = await execute(*args, **kw)
            if mode == "reply":
                raise rex.ConnectionError("connection reset before the reply arrived")
            return res

        pipe.execute = flaky
        return pipe


async def test_a_retried_flush_never_writes_a_batch_twice(r: aioredis.Redis) -> None:
    """The producer's own retry path: every flush's first attempt fails, alternately after Redis
    ran it (reply lost: the retry must not append the batch again, nor reset the stream it took)
    and before (request lost: the retry must append it). Every event arrives exactly once."""
    flaky = FlakyReplies(r, ["reply", "ok", "request", "ok"])
    evs = script(30)
    h = RedisEventHandler(flaky, "rt", options=RedisOptions(max_batch=4))  # type: ignore[arg-type]
    em = EventEmitter([h])
    for i, ev in enumerate(evs):
        await em.emit(ev)
        if i % 3 == 0:
            await asyncio.sleep(0.02)  # past the flush window and a retry's first delay: several flushes
    await h.aclose()
    assert h.error is None
    assert flaky.pipelines >= 8 and h.commands_sent == flaky.pipelines, "every flush was retried once"
    assert await r.xlen("lmstream:chat:rt") == h.entries_written
    same([it.event async for it in RedisStreamReader(r).read("rt")], evs)


async def test_request_stream_and_processor_feed_the_transport(r: aioredis.Redis) -> None:
    """Both ways a real request reaches Redis: a RequestStream fed by hand, and event_emitter=."""
    from lmstream import LMRequestProcessor, PromptBuilder
    from lmstream.testing import ScriptedLMInvoker

    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), ScriptedLMInvoker([f" t{i}" for i in range(30)]))
    h = RedisEventHandler(r, "rs1")
    seen: list[Event] = []
    async with lmrp.stream(q="hi") as stream:
        async for ev in stream:
            seen.append(ev)
            h.emit_nowait(ev)
    await h.aclose()
    same([it.event async for it in RedisStreamReader(r).read("rs1")], seen)
    assert seen[-1].type == "done"

    h2 = RedisEventHandler(r, "rs2")
    await lmrp.process(q="hi", event_emitter=EventEmitter([h2]))
    await h2.aclose()
    got = [it.event async for it in RedisStreamReader(r).read("rs2")]
    assert "".join(e.value for e in got if e.type == "response") == "".join(f" t{i}" for i in range(30))
    assert got[-1].type == "done" and all(e.metadata.get("request_id") for e in got)


async def test_hash_tag_keys_for_redis_cluster(r: aioredis.Redis) -> None:
    """With hash_tag=True every key of a chat carries {chat_id}: one cluster slot per chat."""
    h = RedisEventHandler(r, "ht1", options=RedisOptions(hash_tag=True))
    await h.start()
    assert await r.exists("lmstream:lease:{ht1}")
    em = EventEmitter([h])
    for ev in script(10):
        await em.emit(ev)
    await h.aclose()
    assert await r.exists("lmstream:chat:{ht1}") and not await r.exists("lmstream:chat:ht1")
    items = [it async for it in RedisStreamReader(r, options=RedisOptions(hash_tag=True)).read("ht1")]
    assert len(items) == 13 and items[-1].event.type == "done"


@pytest.mark.parametrize("lost", [False, True])
async def test_notified_hub_delivers_even_when_notifications_are_lost(r: aioredis.Redis, lost: bool) -> None:
    """The multiplexed reader reads the streams producers PUBLISH as changed. When a notification
    never arrives (lost, or published elsewhere), the hub's full read every `block` still delivers
    every event once and in order, late by at most about one block."""
    import time

    block = 0.4
    reader = RedisStreamReader(r, block=block, multiplex=True)
    assert reader.hub is not None
    try:
        h = RedisEventHandler(r, "n")
        if lost:
            h.notify_channel = "elsewhere:notify"  # nobody listens there: every notification is lost
        await h.start()
        got: list[tuple[Event, float]] = []

        async def follow() -> None:
            async for it in reader.read("n"):
                got.append((it.event, time.monotonic()))

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        evs = script(8)
        sent: list[float] = []
        em = EventEmitter([h])
        for ev in evs:
            sent.append(time.monotonic())
            await em.emit(ev)
            await asyncio.sleep(0.03)
        await h.aclose()
        await asyncio.wait_for(task, 5)
        same([e for e, _ in got], evs)
        delays = [t - t0 for (_, t), t0 in zip(got, sent, strict=True)]
        announced = reader.hub.reads - reader.hub.full_reads
        if lost:
            assert max(delays) < block + 0.3, delays
            assert max(delays) > 0.1, "delivered late, by the periodic full read"
            assert announced <= 1, "only the reader's own join is read outside the full reads"
        else:
            assert max(delays) < 0.15, delays  # well under a block: the notification woke the read
            assert announced >= 3
    finally:
        await reader.aclose()


async def test_a_token_after_a_pause_is_not_held_back_and_fast_tokens_still_batch(r: aioredis.Redis) -> None:
    """At most one flush per `flush_interval`, counted from the previous flush: the first delta
    after a pause goes out at once; deltas that follow within the interval wait and share an entry."""
    import time

    h = RedisEventHandler(r, "le", options=RedisOptions(flush_interval=0.3))
    await h.start()
    meta = {"request_id": "r", "block_id": "b", "step": 1}
    t0 = time.monotonic()
    h.emit_nowait(Event("first", "response", metadata=meta))
    async with asyncio.timeout(5):
        while await r.xlen("lmstream:chat:le") < 1:
            await asyncio.sleep(0.005)
    assert time.monotonic() - t0 < 0.2, "the delta after a pause waited for the batch window"
    for i in range(10):
        h.emit_nowait(Event(f"t{i}", "response", metadata=meta))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    assert await r.xlen("lmstream:chat:le") == 1, "deltas right after a flush wait for the window"
    async with asyncio.timeout(5):
        while await r.xlen("lmstream:chat:le") < 2:
            await asyncio.sleep(0.005)
    h.emit_nowait(Event("", "done", metadata={"request_id": "r"}))
    await h.aclose()
    assert await r.xlen("lmstream:chat:le") == 3 and h.entries_written == 3  # first, the ten together, done
