"""Truthful endings against the real `python -m llama_cpp.server` (llama-cpp-python's own server).

Measured on it: by default it interrupts a running stream when another request arrives, ending
it with `data: [DONE]` and no `finish_reason`; it answers a prompt longer than its context with
HTTP 200 and an empty stream; it answers `response_format: json_schema` with HTTP 500 and a
Python traceback. None of these may come back as a success, and none is retried.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from pathlib import Path

import pytest

from lmstream import ProviderError, RetryConfig, StreamInterruptedError, build_lm_invoker
from lmstream.types import LMOutput

from .llama_server import MODEL_ALIAS, llama_server

SERVER_DOC = Path(__file__).parent.parent / "docs" / "failures.md"  # where the manual shows the server line
#: retries that would show: a retried request takes at least base_delay longer
SLOW_RETRIES = RetryConfig(max_retries=3, base_delay=3.0, max_delay=3.0, jitter=False)
HP = {"max_tokens": 24, "temperature": 0.0}


async def _concurrent(url: str, n: int) -> list[LMOutput | BaseException]:
    async with build_lm_invoker("openai-compatible/" + MODEL_ALIAS, config={"base_url": url}) as inv:
        return await asyncio.gather(
            *(inv.invoke(f"Tell me a story about the number {i}.", HP) for i in range(n)), return_exceptions=True
        )


async def test_interrupted_streams_are_errors_never_short_answers(llama_server_url):
    """Default server: concurrent requests interrupt each other ([DONE], no finish_reason)."""
    results = await _concurrent(llama_server_url, 4)
    interrupted = [r for r in results if isinstance(r, StreamInterruptedError)]
    answers = [r for r in results if isinstance(r, LMOutput)]
    assert len(interrupted) + len(answers) == 4, results
    for out in answers:  # a success is a whole answer that says why it ended
        assert out.finish_reason in ("stop", "length") and out.text, out
    assert interrupted, "the server interrupted no request: this test no longer shows the fault"
    for err in interrupted:
        assert "--interrupt_requests False" in str(err)
        assert err.partial_output.finish_reason == "error"


def _readme_server_flags() -> tuple[str, ...]:
    """The flags of the docs' `python -m llama_cpp.server` example (docs/failures.md), after the model."""
    match = re.search(r"^python -m llama_cpp\.server (.+?)(?:\s+#.*)?$", SERVER_DOC.read_text(), re.M)
    assert match, "docs/failures.md has no llama_cpp.server example"
    args = shlex.split(match.group(1))
    return tuple(a for a in args if a not in ("--model", "model.gguf") and not a.endswith(".gguf"))


async def test_readme_llama_cpp_server_example_serves_concurrent_requests_whole():
    flags = _readme_server_flags()
    assert "--interrupt_requests" in flags and flags[flags.index("--interrupt_requests") + 1] == "False"
    keep = flags[flags.index("--interrupt_requests") : flags.index("--interrupt_requests") + 2]
    with llama_server(extra_args=keep) as url:
        results = await _concurrent(url, 3)
    assert all(isinstance(r, LMOutput) and r.finish_reason in ("stop", "length") and r.text for r in results), results


async def test_over_long_prompt_answered_with_an_empty_200_stream(llama_server_url):
    async with build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS, config={"base_url": llama_server_url}, retry_config=SLOW_RETRIES
    ) as inv:
        t0 = time.perf_counter()
        with pytest.raises(StreamInterruptedError) as info:
            await inv.invoke("word " * 3000, {"max_tokens": 8})
        elapsed = time.perf_counter() - t0
    assert elapsed < SLOW_RETRIES.base_delay, f"retried ({elapsed:.1f}s)"
    assert "refused the prompt" in str(info.value) and "check the server's log" in str(info.value)
    assert info.value.partial_output.text == ""


async def test_json_schema_answered_with_500_and_a_traceback_says_use_json_object(llama_server_url):
    async with build_lm_invoker(
        "openai-compatible/" + MODEL_ALIAS,
        config={"base_url": llama_server_url},
        retry_config=SLOW_RETRIES,
        response_schema={"type": "object", "properties": {"name": {"type": "string"}}},
    ) as inv:
        t0 = time.perf_counter()
        with pytest.raises(ProviderError) as info:
            await inv.invoke("A name as JSON.", {"max_tokens": 8})
        elapsed = time.perf_counter() - t0
    assert elapsed < SLOW_RETRIES.base_delay, f"retried ({elapsed:.1f}s)"
    err = info.value
    assert err.status_code == 500 and not err.retryable
    assert 'response_format_type="json_object"' in str(err)
    assert "File " not in str(err)  # the server's traceback is not the message
