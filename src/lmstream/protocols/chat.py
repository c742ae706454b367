"""One `/api/chat` turn, run the same way wherever it runs: inside the server's response, detached
in the server's process, or on a Redis worker that took it from the queue.

`chat_turn` turns a parsed chat (`requests.parse_chat`) into the processor's arguments, its
history fitted to the model's window; `run_chat_turn` runs it with its events going to an
emitter, `stream_chat_turn` as its own event stream. A tool call that needs a person ends the
answer and is saved by `deferred_to` in an approval store, under the answer's UI message id, for
whichever node receives the browser's decision.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from ..approval import DeferredApproval, PendingAnswer, PendingStep
from ..engine.request_stream import RequestStream
from ..events import EventEmitter
from ..processor import LMRequestProcessor
from ..prompt import Content, Message
from ..window import fit_history
from .requests import ChatRequest, PromptSlot
from .ui_approvals import ApprovalStore
from .ui_stream import message_id_of

__all__ = ["ChatTurn", "chat_turn", "deferred_to", "run_chat_turn", "stream_chat_turn"]


@dataclass(slots=True)
class ChatTurn:
    """A chat turn ready to run: the processor's arguments, and how many of the oldest history
    messages were left out to fit the model's window (the client is told)."""

    chat_id: str
    prompt_kwargs: dict[str, Any]
    extra_contents: list[Content] | None
    history: list[Message]
    hyperparameters: dict[str, Any] | None
    dropped: int = 0


def chat_turn(
    processor: LMRequestProcessor[Any], req: ChatRequest, slot: PromptSlot | None = None, fit: bool = True
) -> ChatTurn:
    """The turn `req` asks for: the user's text where the templates take it, the newest history
    that fits (all of it with `fit=False`: a queued chat is fitted by the worker that runs it).
    Raises `ContextOverflowError` when the new message alone does not fit."""
    slot = slot or PromptSlot.of(processor.prompt_builder)
    prompt = slot.kwargs(req.text, req.attachments)
    history, dropped = req.history, 0
    if fit:
        fitted = fit_history(processor, req.history, **prompt, hyperparameters=req.hyperparameters)
        history, dropped = fitted.history, fitted.dropped
    kwargs, contents = prompt["prompt_kwargs"], prompt["extra_contents"]
    return ChatTurn(req.chat_id, kwargs, contents, history, req.hyperparameters, dropped)


def run_chat_turn(
    processor: LMRequestProcessor[Any],
    turn: ChatTurn,
    deferred_approval: DeferredApproval,
    event_emitter: EventEmitter,
) -> Coroutine[Any, Any, Any]:
    """Run `turn`, its events to `event_emitter` (a registry's log, a Redis stream)."""
    return processor.process(
        turn.prompt_kwargs,
        extra_contents=turn.extra_contents,
        history=turn.history,
        hyperparameters=turn.hyperparameters,
        deferred_approval=deferred_approval,
        event_emitter=event_emitter,
    )


def stream_chat_turn(
    processor: LMRequestProcessor[Any], turn: ChatTurn, deferred_approval: DeferredApproval
) -> RequestStream[Any]:
    """`turn` as its own event stream (an answer running inside one HTTP response)."""
    return processor.stream(
        turn.prompt_kwargs,
        extra_contents=turn.extra_contents,
        history=turn.history,
        hyperparameters=turn.hyperparameters,
        deferred_approval=deferred_approval,
    )


def deferred_to(
    store: ApprovalStore, chat_id: str, ttl: float, message_id: str | None = None
) -> DeferredApproval:
    """Approval deferred to `store`: the step waits there, under the chat and the UI message that
    shows its requests (by default the one the answer's request id names, as a replay makes it)."""

    async def save(step: PendingStep) -> None:
        await store.save(PendingAnswer(step, chat_id, message_id or message_id_of(step.request_id)), ttl)

    return DeferredApproval(save)
