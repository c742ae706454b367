"""Helpers the event tests share: a bounded collect, a processor, a recording handler."""

from __future__ import annotations

import asyncio

from lmstream import (
    BaseEventHandler,
    Event,
    LMRequestProcessor,
    PromptBuilder,
)

WAIT = 60  # seconds; generous for a loaded 2-core machine, but a hang still fails


async def collect(stream, timeout: float = WAIT) -> list:
    async def run() -> list:
        return [e async for e in stream]

    return await asyncio.wait_for(run(), timeout)


def processor(invoker) -> LMRequestProcessor:
    return LMRequestProcessor(PromptBuilder(system_template="Be brief.", user_template="{question}"), invoker)


class Recorder(BaseEventHandler):
    """A custom handler as GLLM's guide writes one: only overrides async `emit`."""

    def __init__(self, name: str | None = None, fail: bool = False, raise_errors: bool = False) -> None:
        super().__init__(name, raise_errors=raise_errors)
        self.events: list[Event] = []
        self.fail = fail
        self.closed = 0

    async def emit(self, event: Event) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError(f"recorder {self.name} failed")
        self.events.append(event)

    async def close(self) -> None:
        self.closed += 1
