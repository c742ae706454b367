"""The streaming guide (docs/streaming.md, "The emitter pattern"): an answer token by token from the embedded model.

No key and no network: the model ships in a package.
"""

import asyncio

from lmstream import EventEmitter, LMRequestProcessor, PromptBuilder, build_lm_invoker


async def main() -> None:
    event_emitter = EventEmitter.with_stream_handler()
    lm_invoker = build_lm_invoker("local/smollm2-135m")  # or "openai/gpt-4.1-nano" with OPENAI_API_KEY set
    prompt_builder = PromptBuilder(
        system_template="You are a helpful travel guide.",
        user_template="{question}",
    )
    lmrp = LMRequestProcessor(prompt_builder, lm_invoker)

    task = asyncio.create_task(
        lmrp.process(question="What are some great activities in Tokyo?", event_emitter=event_emitter)
    )
    async for event in event_emitter.stream():
        print(event.value, end="", flush=True)  # "Here" -> " are" -> " some" -> ...
    output = await task  # LMOutput: .text, .usage, .finish_reason, ...
    await event_emitter.close()
    print(
        f"\n\n[{output.usage.output_tokens} tokens, finish_reason={output.finish_reason}, "
        f"first token after {output.time_to_first_token:.2f}s, total {output.duration:.2f}s]"
    )


if __name__ == "__main__":
    asyncio.run(main())
