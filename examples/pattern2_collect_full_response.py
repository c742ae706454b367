"""Pattern 2: collect the full response while it streams (e.g. to store it afterwards)."""

import asyncio

from lmstream import EventEmitter, EventType, build_lm_request_processor


async def main() -> None:
    emitter = EventEmitter.with_stream_handler()
    lmrp = build_lm_request_processor("local/smollm2-135m", user_template="{question}")
    task = asyncio.create_task(lmrp.process(question="What is a haiku?", event_emitter=emitter))
    chunks: list[str] = []
    async for event in emitter.stream():
        if event.type == EventType.RESPONSE:
            chunks.append(event.value)
    output = await task
    await emitter.close()
    full = "".join(chunks)
    assert full == output.text  # the stream and the output agree token for token
    print(f"collected {len(chunks)} tokens, {len(full)} characters:\n{full}")


if __name__ == "__main__":
    asyncio.run(main())
