"""`lmstream batch --provider-batch`: OpenAI's Batch API and Anthropic's Message Batches through
the official SDKs, against stateful replays of their documented wire format (tests/wire/batch_apis.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker
from lmstream.batch import BatchRequest
from lmstream.batch.cli import main as batch_main
from lmstream.batch.provider import run_provider_batch
from lmstream.batch.runner import BatchStats
from tests.wire.batch_apis import AnthropicBatches, OpenAIBatches
from tests.wire.providers import KEY
from tests.wire.server import WireServer

N = 12
BAD = {3, 8}


def _input(tmp_path: Path) -> Path:
    inp = tmp_path / "in.jsonl"
    rows = [{"id": f"q{i}", "prompt": f"question {'bad ' if i in BAD else ''}{i}"} for i in range(N)]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return inp


def _batch_price(provider: str, model: str) -> float:
    usage = genai_prices.Usage(input_tokens=10, output_tokens=2)
    calc = genai_prices.calc_price(usage, model, provider_id=provider, price_context={"processing": "batch"})
    return float(calc.total_price)


def _check_output(out: Path, provider: str, model: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(f"q{i}" for i in range(N))
    failed = {line["id"] for line in lines if "error" in line}
    assert failed == {f"q{i}" for i in BAD}
    for line in lines:
        if "error" in line:
            assert line["error"]["type"] == "ProviderError" and "bad request" in line["error"]["message"]
            continue
        assert line["text"] == f"answer {line['id'][1:]}" and line["finish_reason"] == "stop"
        assert line["usage"]["input_tokens"] == 10 and line["usage"]["output_tokens"] == 2
        assert line["usage"]["cost"]["total"] == pytest.approx(_batch_price(provider, model))
        assert line["duration"] is None and line["time_to_first_token"] is None  # not reported by batch APIs
    return lines


@pytest.mark.parametrize(
    ("model", "endpoint"),
    [("openai-chat/gpt-4o-mini", "/v1/chat/completions"), ("openai/gpt-4.1-mini", "/v1/responses")],
)
def test_openai_batch_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model: str, endpoint: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    replay = OpenAIBatches(polls=3)
    inp, out = _input(tmp_path), tmp_path / "out.jsonl"
    with WireServer(responder=replay) as srv:
        argv = [str(inp), "-o", str(out), "--model", model, "--base-url", srv.base_url + "/v1", "--system", "Be brief."]
        code = batch_main([*argv, "--provider-batch", "--poll-every", "0.05", "--progress-every", "0.01"])
    err = capsys.readouterr().err
    assert code == 1  # two requests failed
    _check_output(out, "openai", model.split("/", 1)[1])
    assert replay.created == 1 and replay.status_reads >= 3
    assert [r.path for r in srv.requests][:2] == ["/v1/files", "/v1/batches"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in srv.requests)
    assert len(replay.uploaded) == N
    line = replay.uploaded[0]
    assert (line["method"], line["url"]) == ("POST", endpoint) and line["custom_id"] == "r0"
    assert "stream" not in line["body"] and line["body"]["model"] == model.split("/", 1)[1]
    assert "submitted openai" in err and "batch_wire1" in err and "answered" in err
    polled = [line for line in err.splitlines() if line.startswith("batch: ")]
    assert polled and all(" done, " in line and "tok/s, ETA" in line for line in polled)  # progress while polling
    assert not (tmp_path / "out.jsonl.provider-batch.json").exists()
    assert KEY not in err


def test_anthropic_message_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    holder: list[WireServer] = []
    replay = AnthropicBatches(lambda: holder[0].base_url, polls=2)
    inp, out = _input(tmp_path), tmp_path / "out.jsonl"
    with WireServer(responder=replay) as srv:
        holder.append(srv)
        argv = [str(inp), "-o", str(out), "--model", "anthropic/claude-haiku-4-5", "--base-url", srv.base_url]
        code = batch_main([*argv, "--max-tokens", "64", "--provider-batch", "--poll-every", "0.05"])
    assert code == 1
    _check_output(out, "anthropic", "claude-haiku-4-5")
    assert replay.created == 1 and len(replay.bodies) == N
    params = replay.bodies[0]["params"]
    assert params["max_tokens"] == 64 and "stream" not in params and params["messages"][-1]["role"] == "user"
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in srv.requests)  # anthropic 2.x
    assert "submitted anthropic" in capsys.readouterr().err


async def test_an_interrupted_job_is_collected_by_the_next_run_not_sent_again(tmp_path: Path) -> None:
    replay = OpenAIBatches(polls=2)
    replay.hold = True  # the provider takes its time
    state = tmp_path / "out.jsonl.provider-batch.json"
    async with WireServer(responder=replay) as srv:
        inv = build_lm_invoker("openai-chat/gpt-4o-mini", credentials=KEY, config={"base_url": srv.base_url + "/v1"})
        lmrp = LMRequestProcessor(PromptBuilder(user_template="{prompt}"), inv)
        reqs = [BatchRequest(f"q{i}", prompt=f"question {i}") for i in range(4)]
        first: list[Any] = []
        run = run_provider_batch(lmrp, reqs, on_result=first.append, stats=BatchStats(total=4), state_path=state,
                                 poll_every=0.02)  # fmt: skip
        task = asyncio.ensure_future(run)
        for _ in range(400):  # bounded: the job is created, then polled (held by the provider)
            if state.exists() and replay.status_reads >= 2:
                break
            await asyncio.sleep(0.05)
        task.cancel()  # Ctrl-C while it polls
        with pytest.raises(asyncio.CancelledError):
            await task
        assert first == [] and json.loads(state.read_text())["job"] == "batch_wire1"
        replay.hold = False
        second: list[Any] = []
        await run_provider_batch(lmrp, reqs, on_result=second.append, stats=BatchStats(total=4), state_path=state,
                                 poll_every=0.02)  # fmt: skip
    assert replay.created == 1, "the job was submitted (and paid for) twice"
    assert sorted(r.id for r in second) == ["q0", "q1", "q2", "q3"] and all(r.ok for r in second)
    assert not state.exists()


def test_provider_batch_refuses_a_provider_without_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp, out = _input(tmp_path), tmp_path / "out.jsonl"
    code = batch_main([str(inp), "-o", str(out), "--model", "openai-compatible/x", "--base-url",
                       "http://127.0.0.1:9/v1", "--provider-batch"])  # fmt: skip
    assert code == 2 and "--provider-batch works with openai/" in capsys.readouterr().err
