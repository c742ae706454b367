"""What the shared provider tables cannot say about the providers beyond the first four (the
embedded model, OpenAI, Anthropic, Google): Azure's two URL forms, Bedrock's SigV4 chain and
signed reasoning, xAI/Ollama defaults, Vertex AI's URL, naming, lazy imports.
test_framework_adapters.py has the LiteLLM / LangChain adapters' own rows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

import lmstream
from lmstream import (
    ConfigurationError,
    LMRequestProcessor,
    PromptBuilder,
    ProviderError,
    RateLimitError,
    RetryConfig,
    build_lm_invoker,
)
from lmstream.invokers import PROVIDERS as PROVIDER_IDS
from tests.wire import eventstream as es
from tests.wire import fixtures as fx
from tests.wire.providers import KEY, PROVIDERS, THINK, WEATHER, get_weather
from tests.wire.providers import invoker as _invoker
from tests.wire.providers import lmrp as _lmrp
from tests.wire.providers import process as _process
from tests.wire.server import Script, WireServer

from .more_providers_support import FAST, TEXT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# =========================================================================== naming


def test_new_providers_are_registered_and_listed_in_errors():
    for name in ("azure-openai", "bedrock", "xai", "ollama", "litellm", "langchain"):
        assert name in PROVIDER_IDS
    with pytest.raises(ConfigurationError) as info:
        build_lm_invoker("nope/model")
    for name in PROVIDER_IDS:
        assert name in str(info.value)


def test_import_lmstream_imports_no_optional_client():
    code = (
        "import sys, lmstream; lmstream.LangChainLMInvoker; lmstream.BedrockLMInvoker; lmstream.LiteLLMLMInvoker;"
        "print(sorted(m for m in ('boto3', 'botocore', 'litellm', 'langchain_core', 'openai', 'google.genai')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert lmstream.LangChainLMInvoker.__name__ == "LangChainLMInvoker"


# =========================================================================== xAI, Ollama


def test_xai_and_ollama_defaults(monkeypatch):
    monkeypatch.setenv("XAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")  # OpenAI's, not theirs
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    xai = build_lm_invoker("xai/grok-4")
    assert xai._url == "https://api.x.ai/v1/chat/completions"
    assert xai._headers["authorization"] == f"Bearer {KEY}" and KEY not in repr(xai)
    ollama = build_lm_invoker("ollama/llama3.2")
    assert ollama._url == "http://localhost:11434/v1/chat/completions" and "authorization" not in ollama._headers
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    assert build_lm_invoker("ollama/llama3.2")._url == "http://10.0.0.5:11434/v1/chat/completions"
    monkeypatch.delenv("XAI_API_KEY")
    with pytest.raises(ConfigurationError, match="XAI_API_KEY"):
        build_lm_invoker("xai/grok-4")


async def test_ollama_thinking_field_from_older_builds():
    """Ollama's compat endpoint sends `reasoning`; older builds sent `thinking`: both are thinking."""
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=fx.openai_chat_text(("4",), reasoning_deltas=THINK, reasoning_field="thinking")))
        inv = build_lm_invoker("ollama/qwen3", config={"base_url": srv.base_url + "/v1"})
        out = await inv.invoke("2+2?")
        await inv.aclose()
        assert "authorization" not in srv.requests[0].headers
    assert out.thinking == "".join(THINK) and out.text == "4"


# =========================================================================== Azure


async def test_azure_v1_form_and_api_key_header(monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    async with WireServer() as srv:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", srv.base_url + "/")
        srv.enqueue(Script(chunks=fx.openai_chat_text(TEXT)), Script(chunks=fx.openai_chat_text(TEXT)))
        v1 = build_lm_invoker("azure-openai/gpt-4o-prod")  # api_version defaults to "v1"
        assert (await v1.invoke("hi")).text == "".join(TEXT)
        dated = build_lm_invoker("azure-openai/gpt-4o-prod", config={"api_version": "2024-10-21"})
        assert (await dated.invoke("hi")).text == "".join(TEXT)
        await v1.aclose()
        await dated.aclose()
        first, second = srv.requests
    assert first.path == "/openai/v1/chat/completions" and first.query == {}
    assert first.json["model"] == "gpt-4o-prod"
    assert second.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert second.query == {"api-version": "2024-10-21"}
    for r in (first, second):
        assert r.headers["api-key"] == KEY and "authorization" not in r.headers


def test_azure_needs_an_endpoint(monkeypatch):
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        build_lm_invoker("azure-openai/dep", credentials=KEY)
    inv = build_lm_invoker(
        "azure-openai/dep", credentials=KEY, config={"base_url": "https://r.openai.azure.com/openai/v1"}
    )
    assert inv._url == "https://r.openai.azure.com/openai/v1/chat/completions"


# =========================================================================== Bedrock


async def test_bedrock_sigv4_from_the_standard_chain(monkeypatch):
    """No API key: botocore signs with the environment's credentials and the configured region."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDWIRETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "wire-session-token")
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=es.bedrock_text(TEXT)))
        inv = build_lm_invoker(
            "bedrock/amazon.nova-lite-v1:0", config={"base_url": srv.base_url, "region": "eu-west-3"}
        )
        out = await inv.invoke("hi", hyperparameters={"max_tokens": 64, "temperature": 0.2, "stop": "END"})
        await inv.aclose()
        req = srv.requests[0]
    assert out.text == "".join(TEXT) and out.finish_reason == "stop"
    auth = req.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDWIRETEST/") and "/eu-west-3/bedrock/aws4_request" in auth
    assert req.headers["x-amz-security-token"] == "wire-session-token"
    assert KEY not in json.dumps(req.headers)  # SigV4 never sends the secret
    assert req.json["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2, "stopSequences": ["END"]}


def test_bedrock_needs_a_region(monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    inv = build_lm_invoker("bedrock/amazon.nova-lite-v1:0", credentials=KEY)
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        asyncio.run(inv.invoke("hi"))


async def test_bedrock_signed_reasoning_travels_back_in_the_tool_loop():
    p = PROVIDERS["bedrock"]
    first = es.bedrock_stream(
        [es.BThinking(("I should", " check."), "sig-bedrock"), es.BToolUse("get_weather", json.dumps(WEATHER))],
        stop_reason="tool_use",
    )
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=first), Script(chunks=es.bedrock_text(("Sunny.",))))
        lmrp = _lmrp(_invoker(p, srv))
        lmrp.set_tools([get_weather])
        events, out = await _process(lmrp, q="Weather?", hyperparameters={"thinking": {"type": "enabled"}})
        first_req, replay = srv.requests[0].json, srv.requests[1].json
    assert out.text == "Sunny."
    assert first_req["additionalModelRequestFields"] == {"thinking": {"type": "enabled"}}
    assistant = next(m for m in replay["messages"] if m["role"] == "assistant")
    assert assistant["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "I should check.", "signature": "sig-bedrock"}}
    }
    assert assistant["content"][1]["toolUse"]["name"] == "get_weather"
    result = replay["messages"][-1]["content"][0]["toolResult"]
    assert result["toolUseId"] == "tooluse_wire_0" and result["status"] == "success"
    assert [e.type for e in events][:3] == ["thinking_start", "thinking", "thinking"]


@pytest.mark.parametrize(("exception", "retryable"), [("throttlingException", True), ("validationException", False)])
async def test_bedrock_in_band_exception_before_first_token(exception, retryable):
    """An exception event before any content: retried only when Bedrock says it is transient."""
    p = PROVIDERS["bedrock"]
    async with WireServer() as srv:
        srv.enqueue(
            Script(
                chunks=[es.event("messageStart", {"role": "assistant"}), es.bedrock_exception(exception, "slow down")]
            ),
            Script(chunks=es.bedrock_text(TEXT)),
        )
        inv = _invoker(p, srv, retry_config=FAST)
        try:
            result: Any = await inv.invoke("hi")
        except ProviderError as exc:
            result = exc
        n = len(srv.requests)
    if retryable:
        assert n == 2 and result.text == "".join(TEXT)
    else:
        assert n == 1 and "slow down" in str(result) and exception in str(result)


async def test_bedrock_http_429_is_rate_limit_with_retry_after():
    p = PROVIDERS["bedrock"]
    async with WireServer() as srv:
        srv.enqueue(*[Script(status=429, headers={"Retry-After": "0"}, body=es.bedrock_error_body(429))] * 2)
        with pytest.raises(RateLimitError) as info:
            await _invoker(p, srv, retry_config=RetryConfig(max_retries=1, base_delay=0.01)).invoke("hi")
    assert info.value.status_code == 429 and "ThrottlingException" in str(info.value)


# =========================================================================== Vertex AI


def test_vertex_without_project_uses_express_mode_key():
    inv = build_lm_invoker("google/gemini-2.5-flash", credentials=KEY, config={"vertexai": True})
    assert inv.vertexai and inv.api_version == "v1beta1"
    inv2 = build_lm_invoker("google/gemini-2.5-flash", config={"vertexai": True, "project": "p", "location": "l"})
    assert inv2._api_key is None  # no GOOGLE_API_KEY needed (ADC)


async def test_azure_responses_dated_api_version_and_api_key_header():
    p = PROVIDERS["azure-openai-responses"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(TEXT)), Script(chunks=p.text(TEXT)))
        dated = build_lm_invoker(
            p.model_id, credentials=KEY, config={"base_url": srv.base_url, "api_version": "2025-04-01-preview"}
        )
        v1 = _invoker(p, srv)
        assert (await dated.invoke("hi")).text == (await v1.invoke("hi")).text == "".join(TEXT)
        await dated.aclose()
        await v1.aclose()
        first, second = srv.requests
    assert first.path == "/openai/responses" and first.query == {"api-version": "2025-04-01-preview"}
    assert first.json["model"] == second.json["model"] == "my-gpt-5-deployment"
    assert first.headers["api-key"] == second.headers["api-key"] == KEY


async def test_bedrock_concurrent_streams_do_not_mix():
    """Each stream has its own worker thread and buffer; one client serves them all."""
    p = PROVIDERS["bedrock"]
    texts = [tuple(f"s{i}-{k} " for k in range(20)) for i in range(12)]
    async with WireServer() as srv:
        srv.enqueue(*[Script(chunks=es.bedrock_text(t), delay_between=0.002) for t in texts])
        inv = _invoker(p, srv)
        outs = await asyncio.gather(*[inv.invoke("hi") for _ in texts])
        await inv.aclose()
    assert sorted(o.text for o in outs) == sorted("".join(t) for t in texts)


async def test_bedrock_request_stream_aclose_closes_the_connection():
    """`await s.aclose()` on lmrp.stream() ends a Bedrock request at once: the worker thread's
    socket is shut down, the server sees the disconnect, no thread is left reading."""
    import threading

    p = PROVIDERS["bedrock"]
    async with WireServer() as srv:
        srv.enqueue(Script(chunks=p.text(tuple(f" w{i}" for i in range(40))), delay_between=0.1))
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), _invoker(p, srv))
        got = []
        async with lmrp.stream(prompt_kwargs={"q": "x"}) as s:
            async for ev in s:
                if ev.type == "response":
                    got.append(ev.value)
                    if len(got) == 2:
                        await s.aclose()
                        break
        assert await srv.wait_for(lambda s: s.disconnects >= 1, 1.0)
        assert srv.requests[0].outcome == "client-closed"
    for _ in range(50):  # the worker notices the shut-down socket and exits
        if not [t for t in threading.enumerate() if t.name.startswith("lmstream-bedrock")]:
            break
        await asyncio.sleep(0.02)
    assert not [t for t in threading.enumerate() if t.name.startswith("lmstream-bedrock")]
    assert got == [" w0", " w1"]
