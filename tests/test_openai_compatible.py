"""The OpenAI-format path against a real llama.cpp server (python -m llama_cpp.server)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from lmstream import (
    ConfigurationError,
    EventEmitter,
    LMRequestProcessor,
    Message,
    OpenAIChatCompletionsLMInvoker,
    OpenAICompatibleLMInvoker,
    PromptBuilder,
    ProviderError,
    RetryConfig,
    build_lm_invoker,
)
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

from .llama_server import MODEL_ALIAS

HP = {"max_tokens": 16, "temperature": 0.0}


async def _run(invoker, hp=HP, **kwargs):
    emitter = EventEmitter.with_stream_handler()
    lmrp = LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{q}"), invoker)
    task = asyncio.create_task(lmrp.process(q="Name a fruit.", event_emitter=emitter, hyperparameters=hp, **kwargs))
    events = [e async for e in emitter.stream()]
    out = await task
    await invoker.aclose()  # pooled keep-alive connections; ResourceWarning fails the test otherwise
    return events, out


@pytest.mark.parametrize(
    ("model_id", "config", "cls"),
    [
        ("openai-compatible/" + MODEL_ALIAS, "base", OpenAICompatibleLMInvoker),
        ("openai-chat/" + MODEL_ALIAS, "base", OpenAIChatCompletionsLMInvoker),
        ("openai-chat-completions/" + MODEL_ALIAS, "base", OpenAIChatCompletionsLMInvoker),
        ("openai/{base}:" + MODEL_ALIAS, None, OpenAICompatibleLMInvoker),
    ],
)
async def test_streams_real_tokens_from_llama_cpp_server(llama_server_url, model_id, config, cls):
    cfg = {"base_url": llama_server_url} if config else None
    invoker = build_lm_invoker(model_id.format(base=llama_server_url), credentials="sk-local", config=cfg)
    assert type(invoker) is cls
    events, out = await _run(invoker)
    text = [e for e in events if e.type == "response"]
    assert len(text) >= 3, "tokens must arrive one by one"
    assert "".join(e.value for e in text) == out.text and out.text.strip()
    assert out.finish_reason in ("stop", "length")
    assert events[-1].type == "done" and events[-1].metadata["finish_reason"] == out.finish_reason
    assert out.time_to_first_token is not None and out.time_to_first_token > 0


async def test_same_output_as_embedded_model(llama_server_url, local_invoker):
    """Same GGUF, greedy decoding: the server path and the in-process path agree."""
    remote = build_lm_invoker("openai-compatible/" + MODEL_ALIAS, config={"base_url": llama_server_url})
    msgs = [Message.user("Name a fruit.")]
    async with remote:
        a = await remote.invoke(msgs, {"max_tokens": 8, "temperature": 0.0})
    b = await local_invoker.invoke(msgs, {"max_tokens": 8, "temperature": 0.0})
    assert a.text == b.text


async def test_history_multi_turn(llama_server_url):
    invoker = build_lm_invoker("openai-compatible/" + MODEL_ALIAS, config={"base_url": llama_server_url})
    history = [Message.user("My name is Ada."), Message.assistant("Hello Ada!")]
    events, out = await _run(invoker, history=history)
    assert out.text and events[-1].type == "done"


async def test_unknown_route_is_a_provider_error_with_status(llama_server_url):
    invoker = build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS,
        config={"base_url": llama_server_url + "/nope"},
    )
    with pytest.raises(ProviderError) as info:
        async with invoker:
            await invoker.invoke("hi", {"max_tokens": 2})
    assert info.value.status_code == 404


@pytest.mark.parametrize("kind", ["json", "html"])
async def test_200_document_instead_of_stream_is_a_provider_error_quoting_it(kind):
    """e.g. an overloaded vLLM/Ollama behind a proxy: 200 + `{"error": {"message": ...}}`."""
    async with WireServer() as srv:
        srv.enqueue(Script.document(kind, "The model is overloaded"))
        invoker = build_lm_invoker("openai-compatible/any", config={"base_url": srv.base_url + "/v1"})
        with pytest.raises(ProviderError) as info:
            async with invoker:
                await invoker.invoke("hi", {"max_tokens": 2})
        assert len(srv.requests) == 1  # answered, so not retried
    err = info.value
    assert str(err).startswith("openai-compatible HTTP 200: expected an event stream")
    assert "The model is overloaded" in str(err) and not err.retryable


@pytest.mark.parametrize("content_type", ["text/event-stream; charset=utf-8", "text/plain", "application/octet-stream"])
async def test_a_stream_with_a_missing_or_loose_content_type_still_streams(content_type):
    """Only JSON, HTML and XML documents are refused: servers that mislabel SSE keep working."""
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("Hel", "lo")), content_type=content_type))
        invoker = build_lm_invoker("openai-compatible/any", config={"base_url": srv.base_url + "/v1"})
        async with invoker:
            out = await invoker.invoke("hi")
    assert out.text == "Hello" and out.finish_reason == "stop"


def test_openai_compatible_needs_base_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="base_url"):
        build_lm_invoker("openai-compatible/x")


def test_missing_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        build_lm_invoker("openai-chat/gpt-4o-mini")


def test_key_from_dotenv_and_never_in_repr(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text('OPENAI_API_KEY="sk-planted-secret-123"\n')
    inv = build_lm_invoker("openai-chat/gpt-4o-mini")
    assert "sk-planted-secret-123" not in repr(inv)
    assert inv._headers["authorization"] == "Bearer sk-planted-secret-123"


class City(BaseModel):
    name: str
    country: str


async def test_structured_output_through_the_real_server(llama_server_url):
    async with build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS,
        config={"base_url": llama_server_url, "response_format_type": "json_object"},
    ) as invoker:
        invoker.set_response_schema(City)
        events, out = await _run(invoker, hp={"max_tokens": 80, "temperature": 0.0})
    assert isinstance(out.structured_output, City)
    assert [e.value for e in events if e.type == "data"][-1] == out.structured_output.model_dump()


async def test_schema_the_server_rejects_is_a_clear_provider_error(llama_server_url):
    """llama-cpp-python's server does not know `json_schema`: its own message comes through."""
    async with build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS,
        config={"base_url": llama_server_url},
        retry_config=RetryConfig(max_retries=0),
        response_schema=City,
    ) as invoker:
        with pytest.raises(ProviderError) as info:
            await invoker.invoke("A city?", {"max_tokens": 8})
    assert info.value.status_code is not None and info.value.status_code >= 400
    assert "response_format" in str(info.value)


async def test_many_concurrent_streams_spread_over_bounded_client_shards():
    """httpx's pool work grows with its connection count: past 64 streams a new client opens."""
    n = 80
    async with WireServer(repeat_last=True) as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("a", "b", "c")), delay_between=0.05))
        async with build_lm_invoker("openai-compatible/x", config={"base_url": srv.base_url + "/v1"}) as invoker:
            outs = await asyncio.gather(*(invoker.invoke("hi") for _ in range(n)))
            shards = invoker._clients._shards
            assert [s.active for s in shards] == [0, 0]  # every stream released its slot
        assert len(srv.requests) == n
    assert all(o.text == "abc" for o in outs)
    assert len(shards) == 2


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_the_tool_loop_runs_end_to_end_on_the_real_llama_cpp_server(llama_server_url):
    """The shipped model behind llama_cpp.server: the assistant turn that carries the tool call
    went out with `"content": null` (the server's schema answers 500), and a forced `tool_choice`
    forced a call on every step until max_lm_calls. Now: one call, its result, then the answer."""
    invoker = build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS, credentials="sk-local", config={"base_url": llama_server_url}
    )
    forced = {"type": "function", "function": {"name": "get_weather"}}
    emitter = EventEmitter.with_stream_handler()
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), invoker, tools=[get_weather])
    task = asyncio.create_task(
        lmrp.process(
            q="What is the weather in Paris?",
            event_emitter=emitter,
            hyperparameters={"max_tokens": 40, "temperature": 0.0, "tool_choice": forced},
            max_lm_calls=3,
        )
    )
    events = [e async for e in emitter.stream()]
    out = await task
    await invoker.aclose()
    results = [e.value for e in events if e.type == "tool_result"]
    assert len(results) == 1 and results[0]["name"] == "get_weather"
    assert results[0]["output"].startswith("sunny in ")
    assert out.finish_reason in ("stop", "length") and not out.tool_calls and out.text.strip()
