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
    kept without what it answers. Raises `ContextOverflowError` when the new message (with the
    system prompt) cannot fit on its own."""
    invoker = processor.lm_invoker
    window = invoker.context_window
    if not window:
        return Fit(history, 0)
    answer = _answer_tokens(processor, hyperparameters, window)
    fixed = invoker.count_tokens(processor.prompt_builder.format(extra_contents=extra_contents, **prompt_kwargs))
    budget = window - answer - fixed
    if budget < 0:
        raise ContextOverflowError(
            f"this message is too long for the model: it takes about {fixed} tokens, and the model reads at "
            f"most {window} tokens including {answer} kept for the answer. Shorten the message or split it.",
            prompt_tokens=fixed,
            max_tokens=answer,
            context_window=window,
        )
    costs = [invoker.count_tokens([m]) for m in history]
    kept, cut = sum(costs), 0
    while kept > budget and cut < len(history):  # drop the oldest whole turn
        end = cut + 1
        while end < len(history) and history[end].role != "user":
            end += 1
        kept -= sum(costs[cut:end])
        cut = end
    return Fit(history[cut:], cut)
