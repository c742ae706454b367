"""Pluggable benchmark clients: each streams one chat completion and appends every non-empty
content delta to `out` (any object with `.append`).

A client is registered as `CLIENTS[name] = Client(requires=[...], make=async factory)`. The
factory takes the server base URL (no `/v1`) and the number of concurrent streams the caller
will run (the floor sizes its connection pool from it; the others keep their defaults, so a
library whose default pool is too small shows it), and returns `(run, aclose)`, where
`await run(n, out)` streams an n-token completion and returns the library's own final text when
it has one (else None), and `await aclose()` releases the client. All imports happen inside the
factory, so importing this module costs nothing and `first-call` timings include the library
import.

Add a client: write `async def _make_x(base_url)` and add it to `CLIENTS`.
"""

from __future__ import annotations

import os

MESSAGES = [{"role": "user", "content": "hi"}]
MODEL = "bench"

# (no `typing` import: the first-call probe imports this module before its clock starts, and
# `typing` would pre-import `re` etc. for the library under test)


class Client:
    # a plain class, not a dataclass, for the same reason
    def __init__(self, requires: list[str], make, note: str = "") -> None:
        self.requires = requires
        self.make = make
        self.note = note

    def missing(self) -> list[str]:
        import importlib.util

        return [m for m in self.requires if importlib.util.find_spec(m) is None]


# --------------------------------------------------------------------------- floor
async def _make_floor(base_url: str, concurrency: int = 1):
    """Bare httpx.AsyncClient + aiter_lines() + stdlib json.loads per data line."""
    import json

    import httpx

    limits = httpx.Limits(max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency))
    client = httpx.AsyncClient(timeout=None, limits=limits)
    url = base_url + "/v1/chat/completions"
    loads = json.loads

    async def run(n: int, out) -> None:
        body = {
            "model": MODEL,
            "messages": MESSAGES,
            "stream": True,
            "max_tokens": n,
            "stream_options": {"include_usage": True},
        }
        async with client.stream("POST", url, json=body, headers={"authorization": "Bearer x"}) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                obj = loads(data)
                choices = obj["choices"]
                if choices:
                    c = choices[0]["delta"].get("content")
                    if c:
                        out.append(c)
        return None

    return run, client.aclose


# --------------------------------------------------------------------------- openai
async def _make_openai(base_url: str, concurrency: int = 1):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0)

    async def run(n: int, out) -> None:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=n,
        )
        async for chunk in stream:
            if chunk.choices:
                c = chunk.choices[0].delta.content
                if c:
                    out.append(c)
        return None

    return run, client.close


# --------------------------------------------------------------------------- langchain
async def _make_langchain(base_url: str, concurrency: int = 1):
    from langchain_openai import ChatOpenAI

    llms: dict = {}

    def llm_for(n: int):
        llm = llms.get(n)
        if llm is None:
            llm = llms[n] = ChatOpenAI(
                model=MODEL, base_url=base_url + "/v1", api_key="x", streaming=True, max_retries=0, max_tokens=n
            )
        return llm

    async def run(n: int, out) -> None:
        async for ev in llm_for(n).astream_events("hi", version="v2"):
            if ev["event"] == "on_chat_model_stream":
                c = ev["data"]["chunk"].content
                if c:
                    out.append(c)
        return None

    async def aclose() -> None:
        for llm in llms.values():
            try:
                await llm.root_async_client.close()
            except Exception:
                pass

    return run, aclose


# --------------------------------------------------------------------------- litellm
async def _make_litellm(base_url: str, concurrency: int = 1):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True

    async def run(n: int, out) -> None:
        resp = await litellm.acompletion(
            model="openai/" + MODEL,
            api_base=base_url + "/v1",
            api_key="x",
            messages=MESSAGES,
            stream=True,
            max_tokens=n,
            stream_options={"include_usage": True},
            num_retries=0,
        )
        async for chunk in resp:
            if chunk.choices:
                c = chunk.choices[0].delta.content
                if c:
                    out.append(c)
        return None

    async def aclose() -> None:
        return None

    return run, aclose


# --------------------------------------------------------------------------- lmstream
async def _make_lmstream(base_url: str, concurrency: int = 1, model: str = "openai-compatible/bench"):
    """The full lmstream pipeline: prompt builder -> invoker -> emitter -> stream handler."""
    import asyncio

    from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker

    invoker = build_lm_invoker(model, config={"base_url": base_url + "/v1"}, credentials="x")
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), invoker)

    async def run(n: int, out) -> str:
        emitter = EventEmitter.with_stream_handler()
        task = asyncio.create_task(lmrp.process(q="hi", event_emitter=emitter, hyperparameters={"max_tokens": n}))
        try:
            async for ev in emitter.stream():
                if ev.type == "response" and ev.value:
                    out.append(ev.value)
        finally:
            if not task.done():
                task.cancel()
        result = await task
        return getattr(result, "text", result)

    async def aclose() -> None:
        close = getattr(invoker, "aclose", None)
        if close is not None:
            await close()

    return run, aclose


async def _make_lmstream_priced(base_url: str, concurrency: int = 1):
    """A priced model id (its calls get `usage.cost` from genai-prices) at the benchmark server."""
    return await _make_lmstream(base_url, concurrency, model="openai-chat/gpt-4.1-nano")


# --------------------------------------------------------------------------- lmstream and OpenTelemetry
class _NoOpenTelemetry:
    """A meta-path finder that makes `opentelemetry` look uninstalled in this process."""

    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} hidden by the benchmark (lmstream-no-otel)")
        return None


async def _make_lmstream_no_otel(base_url: str, concurrency: int = 1):
    """opentelemetry-api not installed (hidden from imports)."""
    import sys

    sys.meta_path.insert(0, _NoOpenTelemetry())
    return await _make_lmstream(base_url, concurrency)


async def _make_lmstream_otel_unset(base_url: str, concurrency: int = 1):
    """The application imported OpenTelemetry but configured no provider."""
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401

    return await _make_lmstream(base_url, concurrency)


async def _make_lmstream_otel(base_url: str, concurrency: int = 1):
    """SDK tracer and meter providers configured (spans kept in memory, metrics read at exit)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tp)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    run, aclose = await _make_lmstream(base_url, concurrency)

    async def checked_run(n: int, out):
        before = len(exporter.get_finished_spans())
        final = await run(n, out)
        if len(exporter.get_finished_spans()) != before + 2:  # lmstream.process + chat
            raise AssertionError("lmstream-otel: the request was not traced")
        return final

    return checked_run, aclose


CLIENTS: dict[str, Client] = {
    "floor": Client(["httpx"], _make_floor, "httpx aiter_lines + stdlib json.loads"),
    "openai": Client(["openai"], _make_openai),
    "langchain": Client(["langchain_openai"], _make_langchain, "astream_events v2"),
    "litellm": Client(["litellm"], _make_litellm),
    "lmstream": Client(["lmstream"], _make_lmstream, "full pipeline"),
    "lmstream-priced": Client(["lmstream"], _make_lmstream_priced, "openai-chat/gpt-4.1-nano: usage.cost priced"),
    "lmstream-no-otel": Client(["lmstream"], _make_lmstream_no_otel, "opentelemetry hidden"),
    "lmstream-otel-unset": Client(
        ["lmstream", "opentelemetry"], _make_lmstream_otel_unset, "opentelemetry imported, no provider"
    ),
    "lmstream-otel": Client(["lmstream", "opentelemetry.sdk"], _make_lmstream_otel, "SDK providers configured"),
}
