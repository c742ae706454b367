"""A long chat on the embedded model: the history is fitted with the model's own chat template
and cut in large steps, so later turns reuse the previous turn's cache and never overflow."""

from __future__ import annotations

from typing import Any

from lmstream import LMRequestProcessor, PromptBuilder, build_lm_invoker
from lmstream.prompt import Message
from lmstream.window import fit_history


async def _chat(lmrp: LMRequestProcessor[Any], turns: int, words: int) -> list[tuple[int, int, int]]:
    """(dropped, input tokens, cached tokens) of each turn of a chat whose questions are `words` long."""
    history: list[Message] = []
    seen: list[tuple[int, int, int]] = []
    for t in range(turns):
        question = f"Question {t}: " + " ".join(f"word{t}x{i}" for i in range(words))
        fit = fit_history(lmrp, history, {"q": question}, None, {"max_tokens": 16})
        out = await lmrp.process(q=question, history=fit.history, hyperparameters={"max_tokens": 16, "temperature": 0})
        seen.append((fit.dropped, out.usage.input_tokens or 0, out.usage.cached_tokens or 0))
        history += [Message.user(question), Message.assistant(out.text)]
    return seen


async def test_a_chat_past_the_window_reuses_the_previous_turns_cache() -> None:
    """Turns 13-14 of a real chat took 18-22 s to the first token instead of 0.7 s: each turn's
    cut changed the prompt's start, so the engine re-read the whole window. Now most turns past
    the window read most of their prompt from the cache (the engine's own cached-token count)."""
    inv = build_lm_invoker("local/smollm2-135m", config={"n_ctx": 1024, "parallel": 1})
    lmrp = LMRequestProcessor(PromptBuilder(system_template="Answer in one short sentence.", user_template="{q}"), inv)
    seen = await _chat(lmrp, 25, 8)
    past = [(d, n, c) for d, n, c in seen if d]
    assert len(past) >= 8, seen  # the chat really overflowed the window
    reused = [c / n for _, n, c in past]
    assert sum(r >= 0.5 for r in reused) >= 0.6 * len(past), [f"{r:.2f}" for r in reused]


async def test_seventy_short_turns_fit_counted_with_the_real_template() -> None:
    """70 short turns with max_tokens 16 gave a 2,123-token prompt and ContextOverflowError: the
    fitting counted 5 tokens a message and no default system prompt. Counted with the template
    the model uses, every turn fits."""
    inv = build_lm_invoker("local/smollm2-135m", config={"parallel": 1})
    lmrp = LMRequestProcessor(PromptBuilder(user_template="{q}"), inv)  # no system: the template adds its own
    seen = await _chat(lmrp, 70, 2)
    assert seen[-1][0] > 0 and all(n + 16 <= 2048 for _, n, _ in seen), seen[-5:]
