"""One OpenAI-compatible request (`/v1/chat/completions`, `/v1/responses`) made ready to run, alike
inside the server's response and on a Redis worker that took it from the queue.
"""

from __future__ import annotations

from typing import Any

from ..events import EventEmitter
from ..processor import LMRequestProcessor
from .openai_chat import (
    ChatCompletionRequest,
    parse_chat_completion,
    processor_for,
    prompt_arguments,
    release,
    tool_settings,
)
from .openai_responses import ResponsesRequest, parse_responses
from .requests import PromptSlot

__all__ = ["JOB_KIND", "openai_job", "prepare"]

#: what a queued job says it is (the worker runs it as the node would have)
JOB_KIND = "openai"


def prepare(
    processor: LMRequestProcessor[Any],
    slot_key: str | None,
    req: ChatCompletionRequest | ResponsesRequest,
    hyper: dict[str, Any] | None,
    allow_client_tools: bool,
) -> tuple[LMRequestProcessor[Any], dict[str, Any], bool]:
    """(processor for this request, `stream()` arguments, whether the client runs the tools)."""
    accepted = frozenset(processor.lm_invoker.extra_params)
    tools, extra = tool_settings(req.tools, req.tool_choice, allow_client_tools, accepted)
    run_processor = processor_for(processor, tools, req.response_schema)
    kwargs = prompt_arguments(slot_key, req.messages)
    merged = {**(hyper or {}), **extra} or None
    kwargs["hyperparameters"] = merged
    if tools:
        kwargs["auto_execute_tools"] = False  # the client runs its own tools
    return run_processor, kwargs, bool(tools)


def openai_job(processor: LMRequestProcessor[Any], job: dict[str, Any], emitter: EventEmitter) -> Any:
    """How a worker runs a queued OpenAI request: the body parsed as the node parsed it (its
    sampling settings already passed the node's policy and come as `hyperparameters`)."""
    body = job["body"]
    req: ChatCompletionRequest | ResponsesRequest = (
        parse_responses(body, int(job.get("max_messages", 500)))
        if job.get("api") == "responses"
        else parse_chat_completion(body, int(job.get("max_messages", 500)))
    )
    run, kwargs, _ = prepare(
        processor, PromptSlot.of(processor.prompt_builder).key, req, job.get("hyperparameters"), True
    )

    async def go() -> Any:
        try:
            return await run.process(event_emitter=emitter, **kwargs)
        finally:
            await release(run, processor)

    return go()
