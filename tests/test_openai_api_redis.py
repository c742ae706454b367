"""`lmstream serve --redis URL --queue` + `lmstream worker`, each in its own process: the OpenAI
routes hand the work to the workers (the node runs no model), stream what the worker produces
through the official SDK, and a client that leaves stops the answer on the worker."""

from __future__ import annotations

import time

import openai

from tests.redis_server import RedisServer
from tests.test_redis_server import WORDS, node, upstream, worker  # noqa: F401 - upstream is a fixture
from tests.wire.server import WireServer

MODEL = "openai-compatible/wire-model"


def test_queued_openai_requests_run_on_the_worker(redis_server: RedisServer, upstream: WireServer) -> None:  # noqa: F811
    w = worker(redis_server.url, upstream)
    n, url = node(redis_server.url, upstream, "--queue", "--allow-client-tools")
    try:
        with openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30) as c:
            chunks = list(
                c.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "Hi"}],
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=50,
                )
            )
            text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert text == "".join(WORDS)
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
            assert upstream.requests[0].json["max_tokens"] == 50  # the node's checked settings reached the worker
            out = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Again"}])
            assert out.choices[0].message.content == "".join(WORDS)
            events = list(c.responses.create(model=MODEL, input="Hi", stream=True))
            assert events[-1].type == "response.completed"
            # the client leaves mid-answer: the worker's upstream request is closed
            stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True)
            for i, _ in enumerate(stream):
                if i == 3:
                    break
            stream.close()
            t0 = time.monotonic()
            assert upstream.wait_for_sync(lambda s: s.requests[-1].disconnected, 2.0), "the worker still streams"
            assert time.monotonic() - t0 < 2.0
    finally:
        n.kill()
        w.kill()
