"""`lmstream batch --provider-batch`: the whole job through the provider's own batch API, at its
batch price (half the usual on OpenAI and Anthropic), through the official SDKs.

OpenAI's Batch API (`openai/` via `/v1/responses`, `openai-chat/` via `/v1/chat/completions`):
upload a JSONL of requests, create the batch, poll it, read the output and error files.
Anthropic's Message Batches (`anthropic/`): create the batch, poll it, stream its results.
Each request is the body the streaming invoker would send, minus streaming. The job's id is
kept beside the output (`OUTPUT.provider-batch.json`) from the moment it is created, so Ctrl-C
while it runs leaves it running and the same command collects it later instead of paying twice.
Results have no `duration` or `time_to_first_token` (the provider does not report them).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import _json
from ..cost import price_of
from ..engine.call import prepare
from ..engine.deltas import CallParams
from ..errors import ConfigurationError, LMStreamError, ProviderError
from ..prompt import text_key
from ..types import TokenUsage
from .requests import BatchRequest
from .results import BatchResult
from .runner import BatchStats, Processor, request_kwargs

__all__ = ["run_provider_batch"]

OnResult = Callable[[BatchResult], None]
_ANTHROPIC_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


async def run_provider_batch(
    lmrp: Processor,
    requests: Sequence[BatchRequest],
    *,
    on_result: OnResult,
    stats: BatchStats,
    state_path: str | Path,
    poll_every: float = 30.0,
    on_poll: Callable[[], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> BatchStats:
    """Submit `requests` as one provider batch (or re-attach to the one `state_path` names), poll
    it until it ends, and hand every request's result to `on_result`."""
    invoker = lmrp.lm_invoker
    api = _api_for(invoker)
    state_file = Path(state_path)
    state = _json.loads(state_file.read_bytes()) if state_file.exists() else None
    if state is not None and state.get("provider") != invoker.provider:
        raise ConfigurationError(f"{state_file} holds a {state.get('provider')} batch; delete it to start over")
    client = api.client(invoker)
    try:
        if state is None:
            bodies: dict[str, dict[str, Any]] = {}
            ids: dict[str, str] = {}
            for n, req in enumerate(requests):
                try:
                    bodies[f"r{n}"] = api.body(invoker, lmrp, req)
                except LMStreamError as exc:  # a request that cannot be sent fails alone
                    _deliver(stats, on_result, _error(req.id, type(exc).__name__, str(exc)))
                    continue
                ids[f"r{n}"] = req.id
            if not bodies:
                return stats
            job = await api.submit(client, invoker, bodies)
            state = {"provider": invoker.provider, "job": job, "ids": ids}
            _write_state(state_file, state)
            say(f"submitted {invoker.provider} batch {job} ({len(bodies)} requests); polling every {poll_every:g}s")
        else:
            say(f"collecting {invoker.provider} batch {state['job']} (submitted by an earlier run)")
        ids = state["ids"]
        while True:
            finished, done, failed = await api.poll(client, state["job"])
            stats.done, stats.failed = done, failed  # the provider's counts until the results arrive
            if on_poll is not None:
                on_poll()
            if finished:
                break
            await asyncio.sleep(poll_every)
        stats.done = stats.failed = 0
        seen: set[str] = set()
        async for cid, result in api.results(client, state["job"], invoker, lmrp):
            rid = ids.get(cid)
            if rid is None or rid in seen:
                continue
            seen.add(rid)
            result.id = rid
            _deliver(stats, on_result, result)
        for rid in ids.values():
            if rid not in seen:
                _deliver(stats, on_result, _error(rid, "BatchNotAnswered", "the provider batch ended without it"))
        state_file.unlink(missing_ok=True)
        return stats
    finally:
        await client.close()


def _deliver(stats: BatchStats, on_result: OnResult, result: BatchResult) -> None:
    stats.add(result)
    on_result(result)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(_json.dumpb(state))
    os.replace(tmp, path)


def _error(rid: str, kind: str, message: str) -> BatchResult:
    return BatchResult(rid, error={"type": kind, "message": message})


def _messages(invoker: Any, lmrp: Processor, req: BatchRequest) -> tuple[Any, CallParams]:
    """The request's messages and parameters (the processor's tools and schema with them)."""
    kw = request_kwargs(req, text_key(lmrp.prompt_builder))
    msgs = lmrp.prompt_builder.format_values(kw["prompt_kwargs"] or {}, kw.get("history"), kw.get("extra_contents"))
    return prepare(invoker, msgs, kw.get("hyperparameters"), lmrp.tools, (lmrp.response_schema, None))


def _answer(rid: str, text: str, usage: TokenUsage, finish: str | None, invoker: Any, lmrp: Processor) -> BatchResult:
    usage.cost = price_of(invoker.billed_as, invoker.model_name, usage, batch=True)
    parsed = lmrp.output_parser is not None
    value = None
    if parsed:
        try:
            value = lmrp.output_parser.parse(text)
        except LMStreamError as exc:
            return BatchResult(
                rid, text=text, usage=usage.to_dict(), error={"type": type(exc).__name__, "message": str(exc)}
            )
    cost = None if usage.cost is None else float(usage.cost)
    return BatchResult(
        rid,
        text=None if parsed else text,
        value=value,
        parsed=parsed,
        usage=usage.to_dict(),
        finish_reason=finish,
        cost=cost,
    )


class _OpenAI:
    """The Batch API: files.create + batches.create, batches.retrieve, files.content."""

    def client(self, invoker: Any) -> Any:
        import openai

        base = invoker.base_url or os.environ.get("OPENAI_BASE_URL") or None
        return openai.AsyncOpenAI(api_key=invoker._api_key, base_url=base, max_retries=3)

    def endpoint(self, invoker: Any) -> str:
        return "/v1/responses" if invoker.provider == "openai" else "/v1/chat/completions"

    def body(self, invoker: Any, lmrp: Processor, req: BatchRequest) -> dict[str, Any]:
        msgs, params = _messages(invoker, lmrp, req)
        if invoker.provider == "openai":
            body = invoker._request(msgs, params)
        else:
            body = invoker._body(msgs, params)
            body.pop("stream_options", None)
        body.pop("stream", None)
        return dict(body)

    async def submit(self, client: Any, invoker: Any, bodies: dict[str, dict[str, Any]]) -> str:
        url = self.endpoint(invoker)
        lines = b"".join(
            _json.dumpb({"custom_id": cid, "method": "POST", "url": url, "body": body}) + b"\n"
            for cid, body in bodies.items()
        )
        f = await client.files.create(file=("lmstream-batch.jsonl", lines, "application/jsonl"), purpose="batch")
        job = await client.batches.create(input_file_id=f.id, endpoint=url, completion_window="24h")
        return str(job.id)

    async def poll(self, client: Any, job_id: str) -> tuple[bool, int, int]:
        job = await client.batches.retrieve(job_id)
        counts = job.request_counts
        done, failed = (counts.completed, counts.failed) if counts else (0, 0)
        if job.status == "failed":  # the whole file was refused (validation)
            errs = "; ".join(e.message or "" for e in (job.errors.data or [])) if job.errors else ""
            raise ProviderError(f"the batch was refused: {errs or job.status}", provider="openai")
        return job.status in ("completed", "expired", "cancelled"), done, failed

    async def results(self, client: Any, job_id: str, invoker: Any, lmrp: Processor) -> Any:
        job = await client.batches.retrieve(job_id)
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await client.files.content(file_id)
            for line in content.text.splitlines():
                if line.strip():
                    row = _json.loads(line)
                    yield row["custom_id"], self._result(row, invoker, lmrp)

    def _result(self, row: dict[str, Any], invoker: Any, lmrp: Processor) -> BatchResult:
        response = row.get("response") or {}
        body = response.get("body") or {}
        if row.get("error") or response.get("status_code") != 200:
            err = row.get("error") or body.get("error") or {}
            status = response.get("status_code")
            message = err.get("message") or f"HTTP {status}"
            kind = "RateLimitError" if status == 429 else "ProviderError"
            return _error("", kind, f"openai HTTP {status}: {message}" if status else message)
        u = body.get("usage") or {}
        if invoker.provider == "openai":  # a Responses object
            text = "".join(
                c.get("text", "")
                for item in body.get("output") or []
                if item.get("type") == "message"
                for c in item.get("content") or []
                if c.get("type") == "output_text"
            )
            incomplete = (body.get("incomplete_details") or {}).get("reason")
            finish = "length" if incomplete == "max_output_tokens" else ("stop" if not incomplete else incomplete)
            cached = (u.get("input_tokens_details") or {}).get("cached_tokens") or 0
            usage = TokenUsage(u.get("input_tokens") or 0, u.get("output_tokens") or 0, cached)
        else:  # a chat.completion
            choice = (body.get("choices") or [{}])[0]
            text = (choice.get("message") or {}).get("content") or ""
            finish = choice.get("finish_reason")
            cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            usage = TokenUsage(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0, cached)
        return _answer("", text, usage, finish, invoker, lmrp)


class _Anthropic:
    """Message Batches: messages.batches.create, .retrieve, .results."""

    def client(self, invoker: Any) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=invoker._api_key, base_url=invoker.base_url or None, max_retries=3)

    def body(self, invoker: Any, lmrp: Processor, req: BatchRequest) -> dict[str, Any]:
        msgs, params = _messages(invoker, lmrp, req)
        body = dict(invoker._request(msgs, params))
        body.pop("stream", None)
        return body

    async def submit(self, client: Any, invoker: Any, bodies: dict[str, dict[str, Any]]) -> str:
        job = await client.messages.batches.create(
            requests=[{"custom_id": cid, "params": body} for cid, body in bodies.items()]
        )
        return str(job.id)

    async def poll(self, client: Any, job_id: str) -> tuple[bool, int, int]:
        job = await client.messages.batches.retrieve(job_id)
        c = job.request_counts
        return job.processing_status == "ended", c.succeeded, c.errored + c.canceled + c.expired

    async def results(self, client: Any, job_id: str, invoker: Any, lmrp: Processor) -> Any:
        async for row in await client.messages.batches.results(job_id):
            yield row.custom_id, self._result(row.result, invoker, lmrp)

    def _result(self, result: Any, invoker: Any, lmrp: Processor) -> BatchResult:
        if result.type != "succeeded":
            err = getattr(getattr(result, "error", None), "error", None)
            message = getattr(err, "message", None) or f"the request was {result.type} by the batch"
            return _error("", "ProviderError" if result.type == "errored" else "BatchNotAnswered", message)
        msg = result.message
        text = "".join(getattr(b, "text", "") for b in msg.content if b.type == "text")
        u = msg.usage
        cached = getattr(u, "cache_read_input_tokens", None) or 0
        written = getattr(u, "cache_creation_input_tokens", None) or 0
        usage = TokenUsage((u.input_tokens or 0) + cached + written, u.output_tokens or 0, cached)
        return _answer("", text, usage, _ANTHROPIC_STOP.get(msg.stop_reason or "", msg.stop_reason), invoker, lmrp)


def _api_for(invoker: Any) -> Any:
    if getattr(invoker, "tools", None):
        raise ConfigurationError("--provider-batch makes one model call per request; tools need the streamed batch")
    if invoker.provider in ("openai", "openai-chat"):
        return _OpenAI()
    if invoker.provider == "anthropic":
        return _Anthropic()
    raise ConfigurationError(
        f"--provider-batch works with openai/, openai-chat/ and anthropic/ models, not {invoker.provider}/; "
        "run without it to stream the batch"
    )
