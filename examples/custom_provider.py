"""Adding a provider: implement `stream_deltas()` and every lmstream feature works on it.

This one speaks a made-up line protocol ("T:<text>" / "U:<in>,<out>" / "END:<reason>") from an
in-memory source; a real one would read its HTTP stream the same way.
"""

import asyncio
from collections.abc import AsyncIterator

from lmstream import LMRequestProcessor, Message, PromptBuilder, ProviderError
from lmstream.engine.deltas import CallParams, Delta, FinishDelta, UsageDelta
from lmstream.invokers import BaseLMInvoker


class LineProtocolLMInvoker(BaseLMInvoker):
    provider = "line-protocol"

    async def stream_deltas(self, messages: list[Message], params: CallParams) -> AsyncIterator[Delta]:
        question = messages[-1].text
        wire = [f"T:{word} " for word in f"You asked: {question}".split()] + ["U:5,4", "END:stop"]
        for line in wire:  # a real provider iterates its HTTP response here
            await asyncio.sleep(0)
            kind, _, body = line.partition(":")
            if kind == "T":
                yield body  # a text delta is a plain str
            elif kind == "U":
                n_in, n_out = body.split(",")
                yield UsageDelta(input_tokens=int(n_in), output_tokens=int(n_out))
            elif kind == "END":
                yield FinishDelta(body)  # without it the stream counts as dropped
            else:
                raise ProviderError(f"unexpected line {line!r}", provider=self.provider)


async def main() -> None:
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), LineProtocolLMInvoker("demo"))
    async with lmrp.stream(q="is this streaming?") as stream:
        async for event in stream:
            print(f"{event.type}: {event.value!r}")
    output = await stream.result()
    print(f"text={output.text!r} usage={output.usage.to_dict()}")


if __name__ == "__main__":
    asyncio.run(main())
