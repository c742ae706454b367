"""Test helpers: an invoker that plays a script, for exercising event plumbing with no model.

invoker = ScriptedLMInvoker(["Hello", " world"])             # every call streams this
invoker = ScriptedLMInvoker([[ToolCallDelta(0, "c1", "add", '{"a": 1}')], ["3"]])  # call 1, call 2
invoker = ScriptedLMInvoker(lambda messages, params: ["echo: ", messages[-1].text])
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeAlias

from .engine.deltas import CallParams, Delta, FinishDelta
from .invokers.base import BaseLMInvoker
from .prompt import Message

__all__ = ["ScriptedLMInvoker"]

# one step of a script: a delta, or an exception to raise at that point
Step: TypeAlias = "Delta | BaseException"
Script: TypeAlias = (
    "Sequence[Step] | Sequence[Sequence[Step]]"
    " | Callable[[list[Message], dict[str, Any]], Iterable[Step] | AsyncIterable[Step]]"
)


class ScriptedLMInvoker(BaseLMInvoker):
    """A deterministic in-process invoker that streams scripted deltas.

    `script` is a list of deltas (every call plays it), a list of such lists (call N plays
    the Nth; the last repeats), or a function `(messages, params) -> deltas` (sync or async
    iterable). An exception in a script is raised at that point. A `FinishDelta("stop")` is
    appended when a call's deltas have none, unless `finish=False` (to script a dropped
    stream). `delay` seconds pass before each delta (the loop is always yielded to, so
    cancellation lands between deltas as with a real provider). `calls` records what each
    call was given; `open_streams` counts streams not yet closed.
    """

    provider = "scripted"

    def __init__(
        self,
        script: Script,
        *,
        model_name: str = "scripted",
        delay: float = 0.0,
        finish: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(model_name, **options)
        self.script = script
        self.delay = delay
        self.finish = finish
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []
        self.open_streams = 0

    def _steps(self, messages: list[Message], params: CallParams) -> Iterable[Step] | AsyncIterable[Step]:
        script = self.script
        if callable(script):
            return script(messages, params)
        if script and all(isinstance(s, (list, tuple)) for s in script):
            turns: Sequence[Sequence[Step]] = script  # type: ignore[assignment]
            return turns[min(len(self.calls) - 1, len(turns) - 1)]
        return script  # type: ignore[return-value]

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Delta]:
        self.calls.append((list(messages), dict(params)))
        steps = self._steps(messages, params)
        self.open_streams += 1
        finished = False
        try:
            if isinstance(steps, AsyncIterable):
                async for step in steps:
                    await asyncio.sleep(self.delay)
                    finished = finished or isinstance(step, FinishDelta)
                    yield _play(step)
            else:
                for step in steps:
                    await asyncio.sleep(self.delay)
                    finished = finished or isinstance(step, FinishDelta)
                    yield _play(step)
            if self.finish and not finished:
                await asyncio.sleep(self.delay)
                yield FinishDelta("stop")
        finally:
            self.open_streams -= 1


def _play(step: Step) -> Delta:
    if isinstance(step, BaseException):
        raise step
    return step
