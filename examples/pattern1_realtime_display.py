"""Pattern 1: real-time display. Print each token the moment it exists."""

import asyncio

from lmstream import EventEmitter, EventType, build_lm_request_processor


async def main() -> None:
    emitter = EventEmitter.with_stream_handler()
    lmrp = build_lm_request_processor(
        "local/smollm2-135m", system_template="You are a concise assistant.", user_template="{question}"
    )
    task = asyncio.create_task(lmrp.process(question="Name three rivers in Europe.", event_emitter=emitter))
    async for event in emitter.stream(types=EventType.RESPONSE):
        print(event.value, end="", flush=True)
    await task
    await emitter.close()
    print()


if __name__ == "__main__":
    asyncio.run(main())
