"""Workers on a Redis queue, in separate processes, against a real redis-server and a paced
upstream (the wire replay server): full runs, a SIGKILLed worker, cross-process stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis") if os.environ.get("CI", "").lower() != "true" else None

import redis.asyncio as aioredis  # noqa: E402

from lmstream.redis import Keys, RedisOptions, RedisQueue, RedisStreamReader, StreamItem, request_stop  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.wire import fixtures  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

TOKENS = [f" w{i}" for i in range(40)]
PACE = 0.05  # seconds between upstream chunks: a 2 s answer
LEASE_1S = RedisOptions(lease=1.0)


@pytest.fixture
def upstream() -> Iterator[WireServer]:
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(TOKENS), delay_between=PACE))
        yield srv


@pytest.fixture
def fast_upstream() -> Iterator[WireServer]:
    """A fast provider: 400 tokens, 0.5 ms apart (2,000 tokens/s, as a fast hosted model bursts)."""
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text([f" t{i}" for i in range(400)]), delay_between=0.0005))
        yield srv


def start_worker(redis_url: str, upstream: WireServer, lease: float = 1.0) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")]),
        "OPENAI_COMPATIBLE_API_KEY": "sk-test",
    }
    cmd = [
        sys.executable, "-c", "import sys; from lmstream.cli import main; sys.exit(main())",
        "worker", "--redis", redis_url, "--model", "openai-compatible/wire-model",
        "--base-url", f"{upstream.base_url}/v1", "--lease", str(lease), "--concurrency", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the banner: the worker is up
    assert "lmstream worker" in line, line
    return proc


def stop_proc(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


async def read_all(r: aioredis.Redis, chat: str, after: str | None = None) -> list[StreamItem]:
    return [it async for it in RedisStreamReader(r, options=LEASE_1S).read(chat, after)]


async def test_worker_runs_queued_request_and_resume_is_exact(
    r: aioredis.Redis, redis_server: RedisServer, upstream: WireServer
) -> None:
    worker = start_worker(redis_server.url, upstream)
    try:
        await RedisQueue(r).enqueue("chat-a", {"prompt": "hi"})
        reader = RedisStreamReader(r, options=LEASE_1S)
        part: list[StreamItem] = []
        async for it in reader.read("chat-a"):
            part.append(it)
            if sum(1 for x in part if x.event.type == "response") == 10:
                break  # the client goes away mid-answer ...
        rest = await asyncio.wait_for(read_all(r, "chat-a", after=part[-1].id), 20)  # ... and comes back
        full = await read_all(r, "chat-a")
        assert [x.id for x in part + rest] == [x.id for x in full]
        assert [x.event.id for x in part + rest] == [x.event.id for x in full]
        assert full[-1].event.type == "done", full[-1].event.value
        assert "".join(x.event.value for x in full if x.event.type == "response") == "".join(TOKENS)
        assert 0 < await r.ttl("lmstream:chat:chat-a") <= 3600
    finally:
        stop_proc(worker)


async def test_sigkilled_worker_ends_stream_with_error_within_lease(
    r: aioredis.Redis, redis_server: RedisServer, upstream: WireServer
) -> None:
    worker = start_worker(redis_server.url, upstream, lease=1.0)
    try:
        await RedisQueue(r).enqueue("chat-k", {"prompt": "hi"})
        got: list[StreamItem] = []
        killed_at = 0.0
        async with asyncio.timeout(15):
            async for it in RedisStreamReader(r, options=LEASE_1S).read("chat-k"):
                got.append(it)
                if len(got) == 6:
                    worker.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
        elapsed = time.monotonic() - killed_at
        last = got[-1].event
        assert last.type == "error" and "lease expired" in last.value
        assert elapsed < 1.0 + 0.5, f"noticed {elapsed:.2f}s after the kill (lease 1 s)"
        assert sum(1 for x in got if x.event.type in ("done", "error")) == 1
        # not re-run: nothing follows the error, and the queue holds no pending job once reaped
        await asyncio.sleep(0.3)
        assert (await read_all(r, "chat-k"))[-1].id == got[-1].id
    finally:
        stop_proc(worker)


async def test_worker_reaper_ends_abandoned_job_without_readers(
    r: aioredis.Redis, redis_server: RedisServer, upstream: WireServer
) -> None:
    """No reader is watching: another worker's reaper notices the dead one and ends the stream."""
    w1 = start_worker(redis_server.url, upstream, lease=1.0)
    w2 = None
    try:
        await RedisQueue(r).enqueue("chat-r", {"prompt": "hi"})
        async with asyncio.timeout(10):
            while not await r.exists("lmstream:chat:chat-r"):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        w1.send_signal(signal.SIGKILL)
        w2 = start_worker(redis_server.url, upstream, lease=1.0)
        async with asyncio.timeout(10):
            while True:
                last = await r.xrevrange("lmstream:chat:chat-r", count=1)
                if last and last[0][1].get(b"t") == b"1":
                    break
                await asyncio.sleep(0.1)
        items = await read_all(r, "chat-r")
        assert items[-1].event.type == "error"
        pending = await r.xpending("lmstream:q:jobs", "workers")
        assert pending["pending"] == 0, "the dead worker's job was acknowledged, not re-run"
    finally:
        stop_proc(w1)
        if w2 is not None:
            stop_proc(w2)


async def test_stop_from_another_process_closes_upstream_within_1s(
    r: aioredis.Redis, redis_server: RedisServer, upstream: WireServer
) -> None:
    worker = start_worker(redis_server.url, upstream)
    try:
        await RedisQueue(r).enqueue("chat-s", {"prompt": "hi"})
        got: list[StreamItem] = []
        async with asyncio.timeout(15):
            async for it in RedisStreamReader(r, options=LEASE_1S).read("chat-s"):
                got.append(it)
                if len(got) == 5:
                    t0 = time.monotonic()
                    assert await request_stop(r, "chat-s") >= 1
                    closed = await upstream.wait_for(lambda s: bool(s.requests) and s.requests[-1].disconnected, 1.0)
                    closed_after = time.monotonic() - t0
                    assert closed, "upstream connection still open 1 s after stop"
        assert closed_after < 1.0
        assert got[-1].event.type == "error"
        assert sum(1 for x in got if x.event.type == "response") < len(TOKENS)
    finally:
        stop_proc(worker)


async def test_redis_commands_per_request_far_fewer_than_tokens(
    r: aioredis.Redis, redis_server: RedisServer, fast_upstream: WireServer
) -> None:
    worker = start_worker(redis_server.url, fast_upstream)
    try:
        await r.config_resetstat()
        await RedisQueue(r).enqueue("chat-n", {"prompt": "hi"})
        items = await asyncio.wait_for(read_all(r, "chat-n"), 20)
        stats = await r.info("commandstats")
        tokens = sum(1 for x in items if x.event.type == "response")
        assert tokens == 400 and items[-1].event.type == "done"
        calls = {k[len("cmdstat_") :]: v["calls"] for k, v in stats.items()}
        issued = calls.get("evalsha", 0) + calls.get("eval", 0)  # the worker's flushes, one round trip each
        assert issued < tokens / 3, f"{issued} commands issued for {tokens} tokens: {calls}"
        print(f"{issued} commands issued for {tokens} tokens: {calls}")
    finally:
        stop_proc(worker)


async def test_worker_survives_redis_restart(upstream: WireServer) -> None:
    with RedisServer() as srv:
        worker = start_worker(srv.url, upstream)
        c = aioredis.Redis.from_url(srv.url, socket_connect_timeout=1, socket_timeout=10)
        try:
            srv.restart()  # everything is gone, the consumer group too
            await asyncio.sleep(0.5)
            async with asyncio.timeout(20):
                await RedisQueue(c).enqueue("chat-x", {"prompt": "hi"})
                items = await read_all(c, "chat-x")
            assert items[-1].event.type == "done"
            assert worker.poll() is None
        finally:
            await c.aclose()
            stop_proc(worker)


def test_worker_cli_needs_redis_and_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    from lmstream.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["worker"])
    assert exc.value.code == 2 and "--redis" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "consumer group" in out and "--lease" in out


async def test_stop_of_a_queued_job_ends_it_before_it_runs(
    r: aioredis.Redis, redis_server: RedisServer, upstream: WireServer
) -> None:
    """A stop sent while the job waits in the queue (no worker yet) is kept by the stop key."""
    await RedisQueue(r).enqueue("chat-q", {"prompt": "hi"})
    assert await request_stop(r, "chat-q") == 0  # nobody is listening yet
    worker = start_worker(redis_server.url, upstream)
    try:
        items = await asyncio.wait_for(read_all(r, "chat-q"), 20)
        assert [x.event.type for x in items] == ["error"]
        assert items[0].event.metadata["error_type"] == "CancelledError"
        assert not upstream.requests, "the stopped job never reached the provider"
    finally:
        stop_proc(worker)


async def test_the_queue_is_bounded_by_age(r: aioredis.Redis) -> None:
    """Jobs no worker took within `queue_max_age` are trimmed by the next enqueue: prompts do not
    pile up in Redis while no worker runs."""
    queue = RedisQueue(r, options=RedisOptions(queue_max_age=0.3))
    await queue.enqueue("old", {"prompt": "secret " * 100})
    await asyncio.sleep(0.5)
    newest = await queue.enqueue("new", {"prompt": "hi"})
    entries = await r.xrange(Keys().queue)
    assert [e[0].decode() for e in entries] == [newest]


async def test_a_job_abandoned_before_it_started_runs_on_another_worker(
    r: aioredis.Redis, redis_server: RedisServer
) -> None:
    """A worker that dies after taking a job but before the request's first event: nobody has
    seen anything of it, so another worker runs it (and the reader gets the whole answer, not
    "worker died")."""
    with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(TOKENS[:5]), delay_first=4.0))  # the first stalls
        srv.enqueue(Script(chunks=fixtures.openai_chat_text(TOKENS), delay_between=0.01))
        w1 = start_worker(redis_server.url, srv, lease=1.0)
        w2 = None
        try:
            await RedisQueue(r).enqueue("chat-u", {"prompt": "hi"})
            async with asyncio.timeout(10):
                while not srv.requests:  # w1 took the job and waits for its first token
                    await asyncio.sleep(0.02)
            w1.send_signal(signal.SIGKILL)
            w2 = start_worker(redis_server.url, srv, lease=1.0)
            items = await asyncio.wait_for(read_all(r, "chat-u"), 20)
            assert items[-1].event.type == "done", items[-1].event.value
            assert "".join(x.event.value for x in items if x.event.type == "response") == "".join(TOKENS)
        finally:
            stop_proc(w1)
            if w2 is not None:
                stop_proc(w2)


class FailingCalls:
    """The client, except that `name` fails with a connection error its first `times` calls."""

    def __init__(self, redis: aioredis.Redis, name: str, times: int) -> None:
        self._redis, self._name, self.left = redis, name, times

    def __getattr__(self, attr: str) -> Any:
        fn = getattr(self._redis, attr)
        if attr != self._name:
            return fn

        async def failing(*args: Any, **kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                import redis.exceptions as rex

                raise rex.ConnectionError("Connection closed by server.")
            return await fn(*args, **kwargs)

        return failing


async def test_a_job_the_worker_could_not_start_goes_back_to_the_queue(r: aioredis.Redis) -> None:
    """Redis fails (past every retry) while the worker starts the job: the job goes back to the
    queue and runs, instead of being dropped and reported as a dead worker a minute later."""
    from lmstream import LMRequestProcessor, PromptBuilder
    from lmstream.redis import Worker
    from lmstream.redis.cli import job_handler
    from lmstream.testing import ScriptedLMInvoker

    processor = LMRequestProcessor(PromptBuilder(), ScriptedLMInvoker(["Hel", "lo"]))
    flaky = FailingCalls(r, "exists", times=4)  # the stop-key check, and its three retries
    worker = Worker(flaky, job_handler(processor), options=LEASE_1S)  # type: ignore[arg-type]
    run = asyncio.create_task(worker.run())
    try:
        await RedisQueue(r).enqueue("chat-b", {"prompt": "hi"})
        items = await asyncio.wait_for(read_all(r, "chat-b"), 10)
        assert [x.event.value for x in items if x.event.type == "response"] == ["Hel", "lo"]
        assert items[-1].event.type == "done"
        async with asyncio.timeout(5):
            while worker.jobs_done < 1:  # counted once its last event is in Redis
                await asyncio.sleep(0.01)
        assert worker.jobs_requeued == 1 and flaky.left == 0
    finally:
        worker.stop()
        await asyncio.wait_for(run, 10)


async def test_an_enqueue_whose_reply_was_lost_is_not_queued_twice(r: aioredis.Redis) -> None:
    """The retry of an enqueue whose first attempt landed (only the reply was lost) finds it and
    neither queues the job again nor replaces the chat's stream a second time."""
    from tests.test_redis_stream import FlakyReplies

    flaky = FlakyReplies(r, ["reply", "ok"])
    entry_id = await RedisQueue(flaky).enqueue("chat-l", {"prompt": "hi"})  # type: ignore[arg-type]
    entries = await r.xrange(Keys().queue)
    assert [e[0].decode() for e in entries] == [entry_id]
    assert (await r.get(Keys().lease("chat-l"))).decode() == "queued:" + entries[0][1][b"claim"].decode()
