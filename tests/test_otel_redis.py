"""A request queued through Redis runs on a worker inside the enqueuing request's trace."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from opentelemetry import trace

from lmstream import LMRequestProcessor, PromptBuilder
from lmstream.chat_registry import Answer
from lmstream.redis import RedisChatRegistry, RedisOptions, Worker
from lmstream.redis.approvals import RedisApprovalStore
from lmstream.redis.cli import chat_jobs, job_handler
from lmstream.testing import ScriptedLMInvoker
from tests.otel_support import telemetry


async def test_a_queued_request_joins_the_trace_of_the_request_that_enqueued_it(r: aioredis.Redis) -> None:
    processor = LMRequestProcessor(PromptBuilder(), ScriptedLMInvoker(["Hel", "lo"]))
    body = {
        "id": "chat-t",
        "trigger": "submit-message",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
    }
    with telemetry() as t:
        registry = RedisChatRegistry(r, queue=True)
        tracer = t.tp.get_tracer("test")
        with tracer.start_as_current_span("browser request") as parent:
            await registry.launch("chat-t", Answer(run=lambda em: processor.process(event_emitter=em), job=body))
        worker = Worker(
            r, job_handler(processor, chat_jobs(processor, RedisApprovalStore(r))), options=RedisOptions(lease=2.0)
        )
        run = asyncio.create_task(worker.run())  # started outside the span: only the job carries it
        try:
            async with asyncio.timeout(10):
                while worker.jobs_done < 1:
                    await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(run, 10)
        request_span = t.span("lmstream.process")
        call_span = t.span("chat scripted")
    want = parent.get_span_context()
    assert request_span.context.trace_id == want.trace_id
    assert request_span.parent is not None and request_span.parent.span_id == want.span_id
    assert call_span.context.trace_id == want.trace_id
    assert trace.get_current_span().get_span_context().is_valid is False
