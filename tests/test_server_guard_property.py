"""A standing guard: generated bodies (wrong types, deep nesting, huge strings, odd Unicode, ids that
look like keys) posted to `/api/chat`, `/v1/stream` and the OpenAI-compatible `/v1/chat/completions`
and `/v1/responses` over real uvicorn. Whatever the body, the answer is 2xx, 400, 408, 413 or 429
(404 for an OpenAI body naming a model not served, 502 for a model that broke the client's
`response_format`) with a JSON body (a 200 is a stream that ends with its terminal chunk or an
error chunk), a setting no client may choose is a 400, never a 500, and no slot stays taken."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmstream import LMRequestProcessor, PromptBuilder
from lmstream.testing import ScriptedLMInvoker
from tests.serve_helpers import ServedApp

ALLOWED = {"max_tokens", "seed", "stop", "temperature", "top_p"}

odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(["\u0000", "\u202e", "²"]),
    max_size=40,
)
key_like = st.sampled_from(["queue", "q:jobs", "x:lease", "x:stop", "notify", "{x}", "chat:1", "a" * 129, ""])
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | odd_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=20
)


def _deep(levels: int) -> Any:
    v: Any = 1
    for _ in range(levels):
        v = {"a": v}
    return v


parts = st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "file", "reasoning", "step-start"]), "text": odd_text})
    | json_values,
    max_size=3,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"id": odd_text, "role": st.sampled_from(["user", "assistant", "system", "robot"]), "parts": parts}
    )
    | json_values,
    min_size=0,
    max_size=3,
)
hyper = st.none() | st.dictionaries(
    st.sampled_from([*sorted(ALLOWED), "extra_body", "model", "n", "tools", "messages"]) | odd_text,
    json_values,
    max_size=3,
)
chat_bodies = st.fixed_dictionaries(
    {"id": key_like | odd_text | json_values, "messages": messages},
    optional={
        "trigger": st.sampled_from(["submit-message", "regenerate-message"]) | odd_text,
        "hyperparameters": hyper,
        "deep": st.integers(1, 400).map(_deep),
        "huge": st.integers(0, 300_000).map(lambda n: "x" * n),
    },
)
USER = {"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
# well-formed bodies with one hostile part: what a client could actually get past the parser
valid_chats = st.builds(
    lambda chat_id, h, deep: {
        "id": chat_id,
        "messages": [USER],
        **({"hyperparameters": h} if h is not None else {}),
        **({"deep": deep} if deep is not None else {}),
    },
    st.sampled_from(["chat-1", "queue", "q:jobs", "x:lease", "a.b-c_d"]),
    hyper,
    st.none() | st.integers(1, 300).map(_deep),
)
valid_streams = st.builds(
    lambda h, deep: {"prompt": "hi", "hyperparameters": h, **({"deep": deep} if deep is not None else {})},
    hyper,
    st.none() | st.integers(1, 300).map(_deep),
)
stream_bodies = st.fixed_dictionaries(
    {},
    optional={
        "prompt": odd_text | json_values,
        "prompt_kwargs": st.dictionaries(odd_text, json_values, max_size=3) | json_values,
        "history": st.lists(st.fixed_dictionaries({"role": odd_text, "content": odd_text}) | json_values, max_size=3),
        "hyperparameters": hyper,
        "deep": st.integers(1, 400).map(_deep),
    },
)


MODEL = "scripted/scripted"  # what the app serves by default: the invoker's model id
OPENAI_FIELDS = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "stop", "seed", "user", "n", "tools", "tool_choice", "parallel_tool_calls", "response_format",
    "store", "metadata", "logprobs", "frequency_penalty", "presence_penalty", "service_tier",
    "safety_identifier", "prompt_cache_key",
}  # fmt: skip
tool_call = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["c1", "c2"]) | odd_text,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": st.sampled_from(["w", "x y"]), "arguments": odd_text | json_values}),
    }
)
oai_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "developer", "tool", "robot"]), "content": odd_text}
    )
    | st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.none(),
            "tool_calls": st.lists(tool_call, max_size=2) | json_values,
        }
    )
    | st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": st.sampled_from(["c1", "c9"]), "content": odd_text}
    )
    | st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url", "file", "audio"]), "text": odd_text}
                )
                | json_values,
                max_size=2,
            ),
        }
    )
    | json_values,
    max_size=4,
)
function_tool = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["function", "web_search"]),
        "function": st.fixed_dictionaries({"name": st.sampled_from(["w", "bad name!", ""]), "parameters": json_values}),
    }
)
oai_common = {
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
    "max_tokens": st.integers(-2, 10**12) | json_values,
    "max_completion_tokens": st.integers(-2, 10**6),
    "temperature": st.floats(allow_nan=True) | json_values,
    "top_p": st.floats(-1, 2),
    "stop": json_values,
    "seed": st.integers(-(2**70), 2**70),
    "n": st.integers(0, 3) | json_values,
    "tools": st.lists(function_tool, max_size=2) | json_values,
    "tool_choice": st.sampled_from(["none", "auto", "required"]) | json_values,
    "response_format": st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "json_object", "json_schema", "xml"]), "json_schema": json_values}
    )
    | json_values,
    "user": json_values,
    "extra_body": json_values,
    "deep": st.integers(1, 300).map(_deep),
    "huge": st.integers(0, 300_000).map(lambda n: "x" * n),
}
completion_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "gpt-4o"]) | odd_text, "messages": oai_messages}, optional=oai_common
)
valid_completions = st.builds(
    lambda stream, usage, sampling: {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "stream_options": {"include_usage": usage},
        **sampling,
    },
    st.booleans(),
    st.booleans(),
    st.fixed_dictionaries(
        {}, optional={k: oai_common[k] for k in ("max_tokens", "temperature", "top_p", "stop", "seed", "tools")}
    ),
)
responses_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL]) | odd_text},
    optional={
        "input": odd_text
        | st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["message", "function_call", "function_call_output", "x"]), "role": odd_text}
            )
            | st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": odd_text | json_values})
            | json_values,
            max_size=3,
        )
        | json_values,
        "instructions": odd_text | json_values,
        "max_output_tokens": st.integers(-2, 10**9),
        "stream": st.booleans(),
        "previous_response_id": st.none() | odd_text,
        "store": st.booleans() | json_values,
        "text": st.fixed_dictionaries({"format": json_values}) | json_values,
        "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": odd_text}), max_size=2),
        "deep": st.integers(1, 300).map(_deep),
    },
)


@pytest.fixture(scope="module")
def app() -> Iterator[ServedApp]:
    proc = LMRequestProcessor(PromptBuilder(), ScriptedLMInvoker(["Hel", "lo"]))
    with ServedApp(proc, max_body_bytes=200_000, max_concurrent=4, allow_client_tools=True) as served:
        yield served


def _depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


@pytest.fixture(scope="module")
def redis_app(redis_server: Any) -> Iterator[tuple[ServedApp, Any]]:
    """The same app with its answers kept in a real redis-server (run here, detached)."""
    import redis as sync_redis

    from lmstream.redis import RedisChatRegistry, connect

    admin = sync_redis.Redis.from_url(redis_server.url)
    admin.flushall()
    proc = LMRequestProcessor(PromptBuilder(), ScriptedLMInvoker(["Hel", "lo"]))
    registry = RedisChatRegistry(connect(redis_server.url), close_redis=True)
    with ServedApp(proc, registry=registry, max_body_bytes=200_000, max_concurrent=4) as served:
        yield served, admin
    admin.close()


def _check(app: ServedApp, client: httpx.Client, path: str, body: Any) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    with client.stream("POST", app.url + path, content=raw, headers={"content-type": "application/json"}) as r:
        status = r.status_code
        text = r.read().decode("utf-8", "replace")
    assert status in (200, 400, 408, 413, 429), (status, text[:300])
    if status == 200:
        assert text.rstrip().endswith(("data: [DONE]", "data: [DONE]\n")) or '"type":"done"' in text or "error" in text
    else:
        assert "error" in json.loads(text), text[:300]
    h = body.get("hyperparameters") if isinstance(body, dict) else None
    if isinstance(h, dict) and set(h) - ALLOWED:
        assert status in (400, 413), f"a client chose {sorted(set(h) - ALLOWED)}: {status}"
    if isinstance(body, dict) and _depth(body) > 64:
        assert status in (400, 413), f"a body {_depth(body)} levels deep was taken: {status}"
    assert app.idle(5.0), "a slot stayed taken"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=valid_chats | chat_bodies | json_values)
def test_any_chat_body_gets_a_clean_answer_and_frees_its_slot(app: ServedApp, body: Any) -> None:
    with httpx.Client(timeout=15) as c:
        _check(app, c, "/api/chat", body)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=valid_streams | stream_bodies | json_values)
def test_any_stream_body_gets_a_clean_answer_and_frees_its_slot(app: ServedApp, body: Any) -> None:
    with httpx.Client(timeout=15) as c:
        _check(app, c, "/v1/stream", body)


def _check_openai(app: ServedApp, client: httpx.Client, path: str, body: Any) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    with client.stream("POST", app.url + path, content=raw, headers={"content-type": "application/json"}) as r:
        status = r.status_code
        text = r.read().decode("utf-8", "replace")
    assert status in (200, 400, 404, 408, 413, 429, 502), (status, text[:300])
    if status == 200:
        if r.headers["content-type"].startswith("text/event-stream"):
            last = [line for line in text.splitlines() if line.startswith("data: ")][-1]
            assert last == "data: [DONE]" or '"error"' in last or '"response.completed"' in last, text[-300:]
            if '"error"' in last:
                assert "[DONE]" not in text  # never a finish after a failure
        else:
            assert "choices" in json.loads(text) or json.loads(text)["object"] == "response"
    else:
        error = json.loads(text)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
    if status == 200 and path == "/v1/chat/completions":
        assert isinstance(body, dict) and set(body) <= OPENAI_FIELDS and body.get("model") == MODEL
    if isinstance(body, dict) and _depth(body) > 64:
        assert status in (400, 413), f"a body {_depth(body)} levels deep was taken: {status}"
    assert app.idle(5.0), "a slot stayed taken"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=valid_completions | completion_bodies | json_values)
def test_any_chat_completions_body_gets_a_clean_answer_and_frees_its_slot(app: ServedApp, body: Any) -> None:
    with httpx.Client(timeout=15) as c:
        _check_openai(app, c, "/v1/chat/completions", body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=responses_bodies | json_values)
def test_any_responses_body_gets_a_clean_answer_and_frees_its_slot(app: ServedApp, body: Any) -> None:
    with httpx.Client(timeout=15) as c:
        _check_openai(app, c, "/v1/responses", body)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=valid_chats | chat_bodies)
def test_with_redis_no_body_touches_a_key_outside_the_chat_namespace(redis_app: Any, body: Any) -> None:
    app, admin = redis_app
    with httpx.Client(timeout=15) as c:
        _check(app, c, "/api/chat", body)
    assert app.wait(lambda: app.state.guard.active == 0, 5.0), "a detached answer kept its slot"
    keys = [k.decode() for k in admin.keys("*")]
    outside = [k for k in keys if not k.startswith(("lmstream:chat:", "lmstream:lease:", "lmstream:stop:"))]
    assert outside == [], outside
