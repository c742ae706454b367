"""The OpenAI-compatible routes on the embedded model, through the official `openai` SDK: a
`response_format` JSON schema is followed (the engine samples under the schema's grammar), and a
client that leaves stops the generation at the next step (the engine's sequence is freed)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from lmstream import build_lm_request_processor
from tests.serve_helpers import ServedApp

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}


@pytest.fixture(scope="module")
def served():
    processor = build_lm_request_processor(
        "local/smollm2-135m", config={"parallel": 2, "n_ctx": 1024, "default_hyperparameters": {"temperature": 0.0}}
    )
    processor.lm_invoker.load()  # type: ignore[attr-defined]
    with ServedApp(processor, max_tokens=256) as app:
        yield app


def test_json_schema_response_format_on_the_embedded_model(served):
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="none", max_retries=0, timeout=120) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="local/smollm2-135m",
            messages=[{"role": "user", "content": "Plan a trip to Tokyo. Answer in JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}},
            max_tokens=60,
        )
        assert raw.headers["x-lmstream-cost-usd"] == "0"
        out = raw.parse()
        value = json.loads(out.choices[0].message.content or "")
        assert isinstance(value["city"], str) and isinstance(value["days"], int)
        assert out.choices[0].finish_reason == "stop"
        assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
        assert out.model_extra["lmstream"]["cost"] == 0  # the embedded model costs nothing
        # json_object: any JSON object, streamed
        stream = c.chat.completions.create(
            model="local/smollm2-135m",
            messages=[{"role": "user", "content": "Give me a JSON object about Paris."}],
            response_format={"type": "json_object"},
            max_tokens=40,
            stream=True,
        )
        chunks = list(stream)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        reason = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason][-1]
        assert text.lstrip().startswith("{")
        if reason == "stop":  # a length stop cuts the object: the reason says so
            assert isinstance(json.loads(text), dict)
    assert served.processor.lm_invoker.response_schema is None  # the shared invoker never saw it


def test_client_leaving_stops_the_embedded_generation_at_the_next_step(served):
    engine = served.processor.lm_invoker
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="none", max_retries=0, timeout=120) as c:
        stream = c.chat.completions.create(
            model="local/smollm2-135m",
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=250,
            stream=True,
        )
        for i, _ in enumerate(stream):
            if i == 5:
                break
        assert engine.engine_stats()["running"] == 1
        stream.close()
        t0 = time.monotonic()
        while engine.engine_stats()["running"] and time.monotonic() - t0 < 2:
            time.sleep(0.01)
        assert engine.engine_stats()["running"] == 0, "the sequence still generates after the client left"
        assert served.idle()
