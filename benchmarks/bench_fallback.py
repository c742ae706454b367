"""How long a fallback takes over: from the primary's failure to the fallback's first token,
beside the fallback's own time to first token measured alone, in the same run.

    python benchmarks/bench_fallback.py                 # 40 requests per row
    python benchmarks/bench_fallback.py --n 100 --first-delay 0.05

Method:
  * Upstreams are tests/wire/server.py replay servers on loopback (one per model, in this
    process's threads), speaking Chat Completions; lmstream reaches them through its
    OpenAI-compatible invoker (its own HTTP client). The fallback answers after
    `--first-delay` seconds (a model's own think time; 0 measures pure overhead).
  * "alone": the fallback invoker by itself, request start -> first `response` event.
  * "failure -> first token": the primary's attempt is timed where its stream ends (a 503, a
    refused connection, a stream cut after 3 tokens without its end marker), then to the first
    `response` event of the fallback at the consumer. "added" = that minus "alone" (median
    of each); target <= 20 ms.
  * Peer, side by side: LiteLLM's Router with `fallbacks=` (same upstreams, `num_retries=0`),
    request start -> first chunk, with the primary failing at start, minus its own alone time
    (its failure time is not observable from outside, so its row counts the primary's round
    trip too; so does lmstream's "total added" column, for comparison). Mid-stream LiteLLM
    does not fall back: the row says what the caller gets.
  * Each row: --n requests after 3 warm-up requests; medians and p90 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "src"))

from tests.wire import fixtures as fx  # noqa: E402
from tests.wire.server import Script, WireServer  # noqa: E402

from lmstream import EventEmitter, FallbackLMInvoker, RetryConfig, build_lm_invoker  # noqa: E402
from lmstream.invokers.openai_chat import OpenAICompatibleLMInvoker  # noqa: E402

PRIMARY = ("Once", " upon", " a", " time", " there", " was", " a", " king")
ANSWER = ("The", " fallback", " answers", " at", " once", ".")
NO_RETRY = RetryConfig(max_retries=0)


class TimedPrimary(OpenAICompatibleLMInvoker):
    """The primary, noting when its stream ended (perf_counter): by an error, or cut short
    (the engine then finds no end marker and fails the attempt at once)."""

    failed_at: float | None = None

    async def stream_deltas(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for d in super().stream_deltas(*args, **kwargs):
                yield d
        finally:
            self.failed_at = time.perf_counter()


def primary(url: str) -> TimedPrimary:
    return TimedPrimary(model_name="primary", base_url=url + "/v1", retry_config=NO_RETRY)


def fallback(url: str) -> Any:
    return build_lm_invoker("openai-compatible/fallback", config={"base_url": url + "/v1"}, retry_config=NO_RETRY)


async def first_token(inv: Any) -> tuple[float, float]:
    """(request start, first response event) in perf_counter seconds; the answer must finish."""
    emitter = EventEmitter.with_stream_handler()
    t0 = time.perf_counter()
    task = asyncio.create_task(inv.invoke("hi", event_emitter=emitter))
    first: float | None = None
    async for e in emitter.stream():
        if e.type == "response" and first is None:
            first = time.perf_counter()
        elif e.type == "reset":
            first = None  # what came before was the primary's
    out = await task
    await emitter.close()
    assert out.text.endswith("".join(ANSWER[1:])), out.text
    assert first is not None
    return t0, first


def ms(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[min(len(xs) - 1, int(0.9 * len(xs)))] * 1000


async def lmstream_rows(n: int, delay: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    fb_script = Script(chunks=fx.openai_chat_text(ANSWER), delay_first=delay)
    with WireServer(repeat_last=True) as fb:
        fb.enqueue(fb_script)
        alone_inv = fallback(fb.base_url)
        alone: list[float] = []
        for i in range(n + 3):
            t0, t1 = await first_token(alone_inv)
            if i >= 3:
                alone.append(t1 - t0)
        await alone_inv.aclose()
        rows.append({"case": "fallback alone", "alone": ms(alone)})
        cases = {
            "primary 503 at start": (Script(status=503, body=fx.openai_error_for(503)), "error"),
            "primary refuses connection": (None, "error"),
            "primary cut after 3 tokens, restart": (
                Script(chunks=fx.openai_chat_text(PRIMARY), drop_after=4),
                "restart",
            ),
            "primary cut after 3 tokens, continue": (
                Script(chunks=fx.openai_chat_text(PRIMARY), drop_after=4),
                "continue",
            ),
        }
        for name, (script, policy) in cases.items():
            with WireServer(repeat_last=True) as up:
                if script is None:
                    url = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once
                else:
                    up.enqueue(script)
                    url = up.base_url
                p = primary(url)
                fb_inv = fallback(fb.base_url)
                chain = FallbackLMInvoker([p, fb_inv], on_midstream_failure=policy)
                took, total = [], []
                for i in range(n + 3):
                    p.failed_at = None
                    t0, t1 = await first_token(chain)
                    assert p.failed_at is not None
                    if i >= 3:
                        took.append(t1 - p.failed_at)
                        total.append(t1 - t0)
                await chain.aclose()
            rows.append({"case": name, "took": ms(took), "total": ms(total), "alone": ms(alone)})
    return rows


def litellm_rows(n: int, delay: float) -> list[dict[str, Any]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: its bundled price table
    try:
        import litellm
        from litellm import Router
    except ImportError:
        return [{"case": "LiteLLM not installed"}]
    from importlib.metadata import version

    litellm.suppress_debug_info = True
    rows: list[dict[str, Any]] = []
    fb_script = Script(chunks=fx.openai_chat_text(ANSWER), delay_first=delay)

    def params(name: str, url: str) -> dict[str, Any]:
        return {"model": f"openai/{name}", "api_base": url + "/v1", "api_key": "sk-bench"}

    async def ttft(router: Any, model: str) -> float:
        t0 = time.perf_counter()
        stream = await router.acompletion(model=model, messages=[{"role": "user", "content": "hi"}], stream=True)
        first = None
        text = ""
        async for chunk in stream:
            d = chunk.choices[0].delta.content if chunk.choices else None
            if d:
                if first is None:
                    first = time.perf_counter()
                text += d
        assert text == "".join(ANSWER), text
        assert first is not None
        return first - t0

    async def go() -> None:
        with WireServer(repeat_last=True) as fb, WireServer(repeat_last=True) as up:
            fb.enqueue(fb_script)
            up.enqueue(Script(status=503, body=fx.openai_error_for(503)))
            model_list = [
                {"model_name": "primary", "litellm_params": params("primary", up.base_url)},
                {"model_name": "fallback", "litellm_params": params("fallback", fb.base_url)},
            ]
            router = Router(model_list=model_list, fallbacks=[{"primary": ["fallback"]}], num_retries=0)
            alone, chain = [], []
            for i in range(n + 3):
                a = await ttft(router, "fallback")
                c = await ttft(router, "primary")
                if i >= 3:
                    alone.append(a)
                    chain.append(c)
            rows.append(
                {"case": f"LiteLLM {version('litellm')}: primary 503 at start", "total": ms(chain), "alone": ms(alone)}
            )
        with WireServer(repeat_last=True) as fb, WireServer(repeat_last=True) as up:
            fb.enqueue(fb_script)
            up.enqueue(Script(chunks=fx.openai_chat_text(PRIMARY), drop_after=4))
            model_list = [
                {"model_name": "primary", "litellm_params": params("primary", up.base_url)},
                {"model_name": "fallback", "litellm_params": params("fallback", fb.base_url)},
            ]
            router = Router(model_list=model_list, fallbacks=[{"primary": ["fallback"]}], num_retries=0)
            try:
                await ttft(router, "primary")
                what = "no fallback"
            except AssertionError as exc:
                what = f"no fallback: the caller gets {str(exc)!r} as the whole answer, no error"
            except Exception as exc:
                what = f"no fallback: {type(exc).__name__}"
            rows.append({"case": f"LiteLLM {version('litellm')}: primary cut after 3 tokens", "note": what})

    asyncio.run(go())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="requests per row (after 3 warm-up ones)")
    ap.add_argument("--first-delay", type=float, default=0.0, help="the fallback's own think time, seconds")
    ap.add_argument("--no-peer", action="store_true", help="skip LiteLLM")
    args = ap.parse_args()
    import lmstream

    rows = asyncio.run(lmstream_rows(args.n, args.first_delay))
    if not args.no_peer:
        rows += litellm_rows(args.n, args.first_delay)
    print(f"lmstream {lmstream.__version__}, fallback think time {args.first_delay * 1000:.0f} ms, n={args.n}")
    print(
        f"{'case':46} {'failure->1st token':>19} {'alone TTFT':>12} {'added':>8} {'total TTFT':>12} {'total added':>12}"
    )
    for r in rows:
        if "note" in r:
            print(f"{r['case']:46} {r['note']}")
            continue
        alone = r.get("alone")
        took, total = r.get("took"), r.get("total")
        cells = [
            f"{took[0]:7.1f} (p90 {took[1]:5.1f})" if took else " " * 19,
            f"{alone[0]:7.1f} ms" if alone else " " * 12,
            f"{took[0] - alone[0]:+6.1f}" if took and alone else " " * 8,
            f"{total[0]:7.1f} ms" if total else " " * 12,
            f"{total[0] - alone[0]:+8.1f} ms" if total and alone else "",
        ]
        print(f"{r['case']:46} {cells[0]:>19} {cells[1]:>12} {cells[2]:>8} {cells[3]:>12} {cells[4]:>12}")


if __name__ == "__main__":
    main()
