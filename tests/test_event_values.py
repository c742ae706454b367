"""Every event value lmstream emits has the shape `lmstream.event_values` gives its type: the keys
a consumer reads (the UI and OpenAI mappers, the Redis codec, the handlers) are all there, and
there are no others. A run with text, a streamed tool call, a tool's progress, its result, an
approval request and the done event covers each built-in dict shape the tool loop makes."""

from __future__ import annotations

from typing import Any, get_type_hints

from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder
from lmstream.approval import DeferredApproval, PendingStep
from lmstream.engine.deltas import FinishDelta, ToolCallDelta
from lmstream.event_values import EVENT_VALUES
from lmstream.events import CallbackEventHandler, Event
from lmstream.testing import ScriptedLMInvoker
from lmstream.tools import report_progress, tool


def _check(ev: Event) -> None:
    shape = EVENT_VALUES.get(ev.type)
    assert shape is not None, f"{ev.type!r} has no shape in lmstream.event_values"
    if ev.type == "done" and ev.value == "":
        return
    if shape in (str, object):
        assert shape is object or isinstance(ev.value, str), (ev.type, ev.value)
        return
    assert isinstance(ev.value, dict), (ev.type, ev.value)
    keys = set(get_type_hints(shape))
    required = set(shape.__required_keys__)  # type: ignore[attr-defined]
    assert required <= set(ev.value) <= keys, (ev.type, sorted(ev.value), sorted(required), sorted(keys))


async def _run(processor: LMRequestProcessor[Any], **kwargs: Any) -> list[Event]:
    seen: list[Event] = []
    emitter = EventEmitter([CallbackEventHandler(seen.append)])
    await processor.process(q="go", event_emitter=emitter, **kwargs)
    await emitter.close()
    return seen


async def test_every_emitted_value_has_its_documented_shape():
    @tool
    async def lookup(city: str) -> dict[str, Any]:
        """Look a city up."""
        await report_progress(0.5, 1.0, "half")
        return {"city": city, "sunny": True}

    @tool(requires_approval=True)
    def delete(path: str) -> str:
        """Delete a file."""
        return "gone"

    call = [
        ToolCallDelta(0, "call_1", "lookup", '{"city": '),
        ToolCallDelta(0, arguments='"Tokyo"}'),
        FinishDelta("tool_calls"),
    ]
    asking = [ToolCallDelta(0, "call_2", "delete", '{"path": "/tmp/x"}'), FinishDelta("tool_calls")]
    invoker = ScriptedLMInvoker([call, ["It is", " sunny."], asking])
    processor = LMRequestProcessor(PromptBuilder(user_template="{q}"), invoker, tools=[lookup, delete])
    events = await _run(processor)
    saved: list[PendingStep] = []

    async def save(step: PendingStep) -> None:
        saved.append(step)

    events += await _run(processor, deferred_approval=DeferredApproval(save))
    types = {e.type for e in events}
    assert {"response", "tool_call_start", "tool_call_delta", "tool_call", "tool_progress", "tool_result"} <= types
    assert {"tool_approval_request", "done"} <= types and saved, sorted(types)
    for ev in events:
        _check(ev)


def test_every_built_in_event_type_has_a_shape():
    from lmstream import EventType

    reserved = {"code_start", "code", "code_end", "activity", "reference", "usage"}
    assert {t.value for t in EventType} - reserved <= set(EVENT_VALUES)
