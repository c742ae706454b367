"""Clients no one here wrote, pointed at `/v1`: LangChain's `ChatOpenAI.astream`, LiteLLM's
`acompletion(model="openai/<name>", api_base=...)`, and under Node the `openai` npm package and
the Vercel AI SDK's `@ai-sdk/openai-compatible` provider with `streamText` (pinned in
tests/js/package-lock.json). Upstream: the wire replay server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serve_helpers import ServedApp, wire_processor
from tests.wire import fixtures as fx
from tests.wire.server import Script, WireServer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM fetches a price table otherwise

NAME = "smol"
WORDS = ("Hello", ",", " from", " lmstream")


@pytest.fixture
def served():
    with WireServer(repeat_last=True) as wire:
        wire.enqueue(Script(chunks=fx.openai_chat_text(WORDS, reasoning_deltas=("hm",))))
        with ServedApp(wire_processor(wire), api_key="k-test", served_model_names=[NAME]) as app:
            yield app, wire


def test_langchain_chat_openai_astream(served):
    from langchain_openai import ChatOpenAI

    app, _ = served

    async def go() -> tuple[list[str], Any]:
        llm = ChatOpenAI(model=NAME, base_url=f"{app.url}/v1", api_key="k-test", max_retries=0, stream_usage=True)  # type: ignore[call-arg]
        parts: list[str] = []
        usage = None
        async for chunk in llm.astream("Hi"):
            parts.append(str(chunk.content))
            usage = chunk.usage_metadata or usage
        return parts, usage

    parts, usage = asyncio.run(go())
    assert "".join(parts) == "".join(WORDS)
    assert len([p for p in parts if p]) == len(WORDS)  # token by token, not one block
    assert usage is not None and usage["input_tokens"] == 12 and usage["output_tokens"] == 5


def test_litellm_acompletion_streams_and_not(served):
    import litellm

    app, wire = served

    async def go() -> tuple[str, str, Any]:
        stream = await litellm.acompletion(
            model=f"openai/{NAME}",
            api_base=f"{app.url}/v1",
            api_key="k-test",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            max_tokens=20,
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
        whole = await litellm.acompletion(
            model=f"openai/{NAME}",
            api_base=f"{app.url}/v1",
            api_key="k-test",
            messages=[{"role": "user", "content": "Hi"}],
        )
        return text, whole.choices[0].message.content, whole.usage

    text, whole, usage = asyncio.run(go())
    assert text == whole == "".join(WORDS)
    assert usage.prompt_tokens == 12
    assert wire.requests[0].json["max_tokens"] == 20


def _node(js_dir: Path, script: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(js_dir / script), *args], capture_output=True, text=True, timeout=120, cwd=js_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_openai_npm_package_and_ai_sdk_openai_compatible_stream_text(served, ai_js_dir):
    app, _ = served
    out = _node(ai_js_dir, "openai_clients.mjs", f"{app.url}/v1", "k-test", NAME)
    assert out["openai"]["text"] == "".join(WORDS)
    assert out["openai"]["deltas"] == len(WORDS)
    assert out["openai"]["finish"] == "stop"
    assert out["openai"]["usage"]["prompt_tokens"] == 12
    assert out["openai"]["status404"] == 404
    assert out["aisdk"]["text"] == "".join(WORDS)
    assert out["aisdk"]["deltas"] >= 2
    assert out["aisdk"]["finishReason"] == "stop"
    assert out["aisdk"]["usage"]["inputTokens"] == 12
    assert out["aisdk"]["reasoning"] == "hm"
