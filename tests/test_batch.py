"""`lmstream batch` and `lmrp.batch()`: 200 requests against a replay of Chat Completions with a
429 storm and some failures; SIGINT mid-run then resume (counted on the server); progress."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lmstream import BudgetExceededError, ConfigurationError, LMRequestProcessor, PromptBuilder, build_lm_invoker
from lmstream.batch import BatchRequest, BatchResult, read_requests, run_batch
from lmstream.batch.progress import format_usd, make_progress, status_line
from lmstream.batch.results import OutputFile
from lmstream.batch.runner import BatchStats, default_concurrency
from tests.wire.batch_apis import ChatReplay as Replay
from tests.wire.providers import KEY
from tests.wire.server import WireServer

N = 200
MODEL = "openai-chat/gpt-4o-mini"


def _lmrp(srv: WireServer) -> LMRequestProcessor[Any]:
    inv = build_lm_invoker(MODEL, credentials=KEY, config={"base_url": srv.base_url + "/v1"})
    return LMRequestProcessor(PromptBuilder(user_template="{prompt}"), inv)


BAD = frozenset(range(5, N, 40))  # 5 requests fail with 400


async def test_200_requests_through_a_429_storm_with_some_failures() -> None:
    replay = Replay(storm=range(30, 60), bad=BAD)  # fewer 429s than one request's patience (4 x 9)
    results: list[BatchResult] = []
    async with WireServer(responder=replay) as srv:
        lmrp = _lmrp(srv)
        reqs = [BatchRequest(str(i), prompt=f"question {i}") for i in range(N)]
        stats = await run_batch(lmrp, reqs, concurrency=16, on_result=results.append)
        await lmrp.lm_invoker.aclose()
    assert sorted(r.id for r in results) == sorted(str(i) for i in range(N))  # each exactly once
    failed = {r.id for r in results if not r.ok}
    assert failed == {str(i) for i in BAD}, [r.error for r in results if not r.ok and int(r.id) not in BAD]
    assert all(
        r.error == {"type": "ProviderError", "message": r.error["message"], "retryable": False}  # a 400
        for r in results
        if r.error
    )
    assert all(r.text == f"answer {r.id}" and r.finish_reason == "stop" for r in results if r.ok)
    ok = next(r for r in results if r.ok)
    assert ok.usage is not None and ok.usage["input_tokens"] == 10 and ok.cost is not None and ok.cost > 0
    assert replay.rate_limited == 30 and sum(replay.answered.values()) == N - len(BAD)
    limiter = stats.limiter
    assert limiter is not None and limiter.rate_limited > 0
    assert limiter.lowest <= 4, "the storm did not narrow the concurrency"
    assert limiter.allowed > limiter.lowest, "the concurrency did not grow back after the storm"
    assert (stats.done, stats.failed) == (N - len(BAD), len(BAD))
    assert stats.spend == pytest.approx(sum(r.cost or 0 for r in results))


async def test_library_call_streams_results_as_they_complete() -> None:
    async with WireServer(responder=Replay(pace=0.02)) as srv:
        lmrp = _lmrp(srv)
        seen: list[tuple[float, str]] = []
        t0 = time.monotonic()
        prompts = [f"question {i}" for i in range(12)]
        out = await lmrp.batch(prompts, concurrency=4, on_result=lambda r: seen.append((time.monotonic(), r.id)))
        await lmrp.lm_invoker.aclose()
    total = time.monotonic() - t0
    assert [r.id for r in out] == [rid for _, rid in seen] and sorted(int(r.id) for r in out) == list(range(12))
    assert seen[0][0] - t0 < total / 2, "results arrived only at the end"
    assert all(r.text == f"answer {r.id}" for r in out)


def _cmd(inp: Path, out: Path, srv: WireServer, *extra: str) -> list[str]:
    return [
        sys.executable, "-c", "import sys; from lmstream.cli import main; sys.exit(main())",
        "batch", str(inp), "-o", str(out), "--model", MODEL, "--base-url", srv.base_url + "/v1",
        "--concurrency", "8", "--progress-every", "0.2", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _count(out: Path) -> int:
    return out.read_text().count("\n")


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]  # every line valid JSON


def test_sigint_mid_run_then_resume_answers_every_id_exactly_once(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": str(i), "prompt": f"question {i}"}) + "\n" for i in range(N)))
    replay = Replay(storm=range(20, 40), bad=BAD, pace=0.03)
    with WireServer(responder=replay) as srv:
        proc = subprocess.Popen(_cmd(inp, out, srv), env=_env(), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and (not out.exists() or _count(out) < 60):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err1 = proc.communicate(timeout=30)
        assert proc.returncode == 130, err1
        first = _lines(out)
        sent_first = Counter(replay.sent)
        written = {line["id"] for line in first}
        in_flight = set(sent_first) - written  # started, not finished (some waiting out a 429)
        streaming = set(replay.answered) - written  # being answered at the interrupt: one per slot at most
        assert "resume with:" in err1 and "lmstream batch" in err1 and str(out) in err1
        assert 60 <= len(first) < N and len(streaming) <= 8
        replay.sent.clear()

        resumed = subprocess.run(_cmd(inp, out, srv), env=_env(), stderr=subprocess.PIPE, text=True, timeout=120)
        second = _lines(out)
        sent_again = set(replay.sent)
        # only what was running at the interrupt went out twice; nothing answered was sent again
        assert sent_again & set(sent_first) <= in_flight
        assert sent_again == {str(i) for i in range(N)} - {line["id"] for line in first}
        ids = [line["id"] for line in second]
        assert sorted(ids) == sorted(str(i) for i in range(N)), "an id is missing or answered twice"
        # the 400s are kept as failed, and a 400 is no failure a retry cures: no --retry-failed advice
        assert resumed.returncode == 1 and "--retry-failed" not in resumed.stderr
        assert "failed with errors a retry cannot cure" in resumed.stderr
        assert "batch: " in resumed.stderr and " done, " in resumed.stderr and "tok/s, ETA" in resumed.stderr
        assert "answered" in resumed.stderr and "spend $" in resumed.stderr

        again = subprocess.run(
            [*_cmd(inp, out, srv), "--retry-failed"], env=_env(), stderr=subprocess.PIPE, text=True, timeout=60
        )
    final = _lines(out)
    assert again.returncode == 0, again.stderr
    assert sorted(line["id"] for line in final) == sorted(str(i) for i in range(N))
    assert not [line for line in final if "error" in line]
    assert all(line["text"] == f"answer {line['id']}" for line in final)
    line = final[0]
    assert set(line) == {"id", "text", "usage", "finish_reason", "duration", "time_to_first_token"}
    assert line["usage"]["cost"]["total"] > 0 and line["time_to_first_token"] <= line["duration"]


def test_a_line_cut_short_by_a_crash_is_dropped_and_earlier_lines_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    f = OutputFile(out)
    assert f.open().done == set()
    for i in range(3):
        f.write(BatchResult(str(i), text=f"answer {i}"))
    f.write(BatchResult("3", error={"type": "ProviderError", "message": "HTTP 400"}))
    f.close()
    with out.open("ab") as raw:
        raw.write(b'{"id": "4", "text": "half an ans')  # the crash
    h = OutputFile(out)
    resume = h.open()
    h.close()
    assert (resume.done, resume.failed, resume.dropped) == ({"0", "1", "2"}, {"3"}, 1)
    assert [line["id"] for line in _lines(out)] == ["0", "1", "2", "3"]
    g = OutputFile(out)
    again = g.open(retry_failed=True)
    g.close()
    assert again.failed == set() and [line["id"] for line in _lines(out)] == ["0", "1", "2"]


def test_two_runs_cannot_write_one_output(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "0", "text": "a"}\n{"id": "1", "text": "cut sh')  # the second run must tidy it
    first = OutputFile(out)
    first.open()
    with pytest.raises(ConfigurationError, match="being written by another lmstream batch run"):
        OutputFile(out).open()
    first.close()
    again = OutputFile(out)
    assert again.open().done == {"0"}
    again.close()


def test_bad_input_is_one_clear_error_naming_the_lines(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "a"}\nnot json\n{"id": 1, "prompt": "b"}\n{"prompt": 3}\n{"pormpt": "x"}\n')
    with pytest.raises(ConfigurationError) as err:
        read_requests(inp)
    msg = str(err.value)
    assert "4 bad request(s), nothing was sent" in msg
    assert "line 2: not valid JSON" in msg and "line 3: id '1' repeats line 1" in msg
    assert "line 4: prompt must be a string" in msg and "line 5: unknown key(s) pormpt" in msg
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("id,prompt,topic\na,What is up?,misc\n,Second,x\n")
    reqs = read_requests(csv_file)
    assert [(r.id, r.prompt, r.metadata) for r in reqs] == [
        ("a", "What is up?", {"topic": "misc"}),
        ("3", "Second", {"topic": "x"}),
    ]


def test_cli_bad_input_exits_2_before_sending(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"id": "a"}\n')
    with WireServer(responder=Replay()) as srv:
        proc = subprocess.run(_cmd(inp, out, srv), env=_env(), stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2 and "give exactly one of prompt" in proc.stderr
    assert srv.requests == []


def test_progress_bar_on_a_terminal_shows_done_failed_rate_eta_and_spend() -> None:
    from rich.console import Console

    buf = io.StringIO()
    stats = BatchStats(total=10)
    progress = make_progress(stats, console=Console(file=buf, force_terminal=True, width=140))
    progress.start()
    for i in range(4):
        stats.add(BatchResult(str(i), text="x", usage={"input_tokens": 5, "output_tokens": 20}, cost=0.0025))
    stats.add(BatchResult("9", error={"type": "ProviderError", "message": "boom"}))  # nothing billed
    stats.add(BatchResult("8", text="y", usage={"input_tokens": 5, "output_tokens": 20}))  # billed, price unknown
    progress.update()
    progress.stop()
    shown = buf.getvalue()
    assert "6/10" in shown and "1 failed" in shown and "tok/s" in shown and "ETA" in shown
    assert "$0.0100" in shown
    assert format_usd(0.00027) == "$0.000270" and format_usd(12.5) == "$12.5000" and format_usd(0) == "$0.0000"
    plain = status_line(stats)
    assert plain.startswith("batch: 5/10 done, 1 failed, 0 running, ") and "$0.0100 (+1 unpriced)" in plain


async def test_the_embedded_model_is_fed_up_to_its_sequence_count(local_invoker: Any) -> None:
    assert default_concurrency(local_invoker, None) == (local_invoker.parallel, False)
    assert default_concurrency(local_invoker, 1000) == (local_invoker.parallel, False)
    assert default_concurrency(build_lm_invoker(MODEL, credentials=KEY), None) == (16, True)
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{prompt}"), local_invoker)
    reqs = [{"id": f"q{i}", "prompt": f"Say {i}", "hyperparameters": {"max_tokens": 4}} for i in range(4)]
    out = await lmrp.batch(reqs)
    assert sorted(r.id for r in out) == ["q0", "q1", "q2", "q3"]
    assert all(r.ok and r.text and r.usage and r.usage["cost"]["total"] == 0 for r in out)


async def test_budget_on_a_batch_stops_new_requests_and_says_so() -> None:
    replay = Replay(pace=0.01)
    async with WireServer(responder=replay) as srv:
        lmrp = _lmrp(srv)
        one = float(_price(10, 2))
        got: list[BatchResult] = []
        with pytest.raises(BudgetExceededError) as err:
            await lmrp.batch([f"question {i}" for i in range(40)], concurrency=2, on_result=got.append, budget=one * 5)
        await lmrp.lm_invoker.aclose()
    assert 4 <= len(got) < 40 and len(replay.sent) == len(got)  # no request started once it was spent
    assert "not sent" in str(err.value) and "$" not in str(err.value).split("reached")[1]  # one spend: the summary's
    spent = sum(r.cost or 0 for r in got)
    assert one * 3 <= spent <= one * 5 * 1.0001


async def test_budget_stops_new_work_before_the_requests_in_flight_overshoot_it() -> None:
    """The spend went 79% over --budget: a request started whenever the spend so far was under the
    limit, however many were running. Now what the running ones are likely to cost counts too."""
    replay = Replay(pace=0.02)
    async with WireServer(responder=replay) as srv:
        lmrp = _lmrp(srv)
        one = float(_price(10, 2))
        got: list[BatchResult] = []
        with pytest.raises(BudgetExceededError):
            await lmrp.batch([f"question {i}" for i in range(60)], concurrency=4, on_result=got.append, budget=one * 10)
        await lmrp.lm_invoker.aclose()
    spent = sum(r.cost or 0 for r in got)
    assert one * 10 - one * 4 <= spent <= one * 11, (len(got), spent / one)


async def test_a_bad_hyperparameter_on_any_line_stops_the_batch_before_anything_is_sent(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"id": str(i), "prompt": f"q{i}"} for i in range(30)]
    lines[17]["hyperparameters"] = {"temperature": 9}
    lines[23]["hyperparameters"] = {"max_tokens": "many"}
    inp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with WireServer(responder=Replay()) as srv:
        proc = subprocess.run(_cmd(inp, out, srv), env=_env(), stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "2 request(s) have hyperparameters" in proc.stderr and "id 17: " in proc.stderr and "id 23: " in proc.stderr
    assert "nothing was sent" in proc.stderr and srv.requests == []


def _price(inp: int, out: int) -> Any:
    import genai_prices

    usage = genai_prices.Usage(input_tokens=inp, output_tokens=out)
    return genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price


async def test_json_answers_go_out_as_value() -> None:
    from lmstream import JSONOutputParser
    from lmstream.testing import ScriptedLMInvoker

    inv = ScriptedLMInvoker(lambda messages, params: ['{"city": ', '"Paris"}'])
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{prompt}"), inv, JSONOutputParser())
    (r,) = await lmrp.batch([{"id": "a", "prompt": "A city as JSON", "metadata": {"k": 1}}])
    assert r.value == {"city": "Paris"} and r.text is None
    line = r.to_dict()
    assert line["value"] == {"city": "Paris"} and "text" not in line and line["metadata"] == {"k": 1}
