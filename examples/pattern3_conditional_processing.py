"""Pattern 3: conditional processing. React to specific event types and levels."""

import asyncio

from lmstream import EventEmitter, EventLevel, EventType, build_lm_request_processor


async def main() -> None:
    emitter = EventEmitter.with_stream_handler(event_level=EventLevel.DEBUG)
    lmrp = build_lm_request_processor("local/smollm2-135m", user_template="{question}")
    task = asyncio.create_task(
        lmrp.process(
            question="Give me one tip for learning Japanese.", event_emitter=emitter, hyperparameters={"max_tokens": 80}
        )
    )
    async for event in emitter.stream():
        if event.level >= EventLevel.ERROR:
            print(f"\n!! {event.type}: {event.value}")
        elif event.type == EventType.RESPONSE:
            print(event.value.upper() if event.value.strip().isdigit() else event.value, end="", flush=True)
        elif event.type in (EventType.THINKING_START, EventType.THINKING, EventType.THINKING_END):
            pass  # hide the model's reasoning from the user
        elif event.type == EventType.DONE:
            usage = event.metadata["usage"]
            print(f"\n[done: {usage['output_tokens']} tokens, finish_reason={event.metadata['finish_reason']}]")
    await task
    await emitter.close()


if __name__ == "__main__":
    asyncio.run(main())
