"""Fit a chat's history to the model's context window before the answer starts.

A long conversation would otherwise overflow a small model (n_ctx 2048, 512 tokens kept for the
answer: about five long turns) and every later message would fail. The server keeps the system
prompt, the new message and the newest turns, drops the oldest whole turns, and tells the client
how many messages were left out. Only when the new message cannot fit on its own is the request
refused ("this message is too long for the model").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ContextOverflowError
from .processor import LMRequestProcessor
from .prompt import Message

__all__ = ["DEFAULT_ANSWER_TOKENS", "Fit", "fit_history"]

#: tokens kept free for the answer when neither the request nor the invoker sets max_tokens
DEFAULT_ANSWER_TOKENS = 512


@dataclass(slots=True)
class Fit:
    history: list[Message]
    dropped: int  # messages of the history left out (oldest first)


def _answer_tokens(processor: LMRequestProcessor[Any], hyperparameters: dict[str, Any] | None, window: int) -> int:
    invoker = processor.lm_invoker
    wanted = (
        (hyperparameters or {}).get("max_tokens")
        or invoker.default_hyperparameters.get("max_tokens")
        or getattr(invoker, "max_tokens", None)  # the local invoker's own default
    )
    n = wanted if isinstance(wanted, int) and wanted > 0 else DEFAULT_ANSWER_TOKENS
    return min(n, window // 2)  # a large max_tokens must not leave no room for the prompt


def fit_history(
    processor: LMRequestProcessor[Any],
    history: list[Message],
    prompt_kwargs: dict[str, Any],
    extra_contents: Any,
    hyperparameters: dict[str, Any] | None,
) -> Fit:
    """The newest history that fits `processor.lm_invoker.context_window` with the system prompt,
    the new message and room for the answer. Unknown window: the history as it is.

    History is cut only where a turn begins (a user message), so no answer or tool result is
    kept without what it answers, and the cut moves in large steps (`stable_cut`), so turn after
    turn the prompt starts the same way and the model reuses the previous turn's cache. Raises
    `ContextOverflowError` when the new message (with the system prompt) cannot fit on its own."""
    invoker = processor.lm_invoker
    window = invoker.context_window
    if not window:
        return Fit(history, 0)
    answer = _answer_tokens(processor, hyperparameters, window)
    builder = processor.prompt_builder
    fixed = invoker.count_tokens(builder.format(extra_contents=extra_contents, **prompt_kwargs))
    budget = window - answer - fixed
    if budget < 0:
        raise ContextOverflowError(
            f"this message is too long for the model: it takes about {fixed} tokens, and the model reads at "
            f"most {window} tokens including {answer} kept for the answer. Shorten the message or split it.",
            prompt_tokens=fixed,
            max_tokens=answer,
            context_window=window,
        )
    if not history:
        return Fit(history, 0)
    # each message's own share of the prompt: beside a system message, so that a template that adds
    # a default system prompt when there is none (SmolLM2's) does not charge it to every message
    head = [Message.system("")]
    base = invoker.count_tokens(head)
    costs = [invoker.count_tokens([*head, m]) - base for m in history]
    starts = [i for i, m in enumerate(history) if i == 0 or m.role == "user"]
    cut = stable_cut(costs, starts, budget)
    # Per-message counts miss how tokens join at message edges: the whole prompt has the last word.
    while cut < len(history):
        prompt = builder.format(history=history[cut:], extra_contents=extra_contents, **prompt_kwargs)
        if invoker.count_tokens(prompt) + answer <= window:
            break
        cut = next((i for i in starts if i > cut), len(history))
    return Fit(history[cut:], cut)


def stable_cut(costs: list[int], starts: list[int], budget: int) -> int:
    """Where to cut a history whose messages take `costs` tokens, at one of the turn `starts`,
    so that what is kept takes at most `budget`.

    Cut points are chosen among "pages" of about half the budget, counted from the history's
    start; the earliest page whose rest fits wins. The pages of a history do not move as it
    grows at its end, so the cut (and the prompt up to the newest turns) stays the same for
    about half a window of turns, then jumps a page, as llama.cpp's context shift does. Cutting
    just enough each turn instead moved the prompt's start every turn and the embedded model
    could reuse nothing: time to first token went from 0.7 s to 20 s by turn 13."""
    total = sum(costs)
    if total <= budget:
        return 0
    step = max(1, budget // 2)
    before = [0] * (len(costs) + 1)
    for i, c in enumerate(costs):
        before[i + 1] = before[i] + c
    page = 1
    for i in starts:
        if before[i] >= page * step:
            if total - before[i] <= budget:
                return i
            page = before[i] // step + 1
    # even the newest page is too long (one huge turn): drop the oldest whole turns until it fits
    for i in starts:
        if total - before[i] <= budget:
            return i
    return len(costs)
