"""The chat registry: which chats have an answer, so that any request can stop or resume it.

The server (`lmstream.server`) talks to a registry through this module only, and a store
(`lmstream.redis`) implements it without importing the server; the command line wires the two.
A registry deals in `Event`s and positions, never in HTTP bytes: the server maps events to the
wire format itself.

Contract, for every implementation:

- A **position** is an opaque string the registry gives out with each event of an answer (the
  server sends it as the SSE ``id:`` and gets it back as ``Last-Event-ID``). Positions grow
  within an answer and never name an event of another answer.
- `resume(chat_id, after)` returns None when the chat has no answer (running or kept), else an
  iterator of ``(position, event)`` for **every** event of the answer from its first one (the
  server rebuilds its mapping state from them and skips what the client already has), following
  the answer live, and ending after the terminal event (`done` or `error`). An `error` event whose
  ``metadata["error_type"]`` is ``"CancelledError"`` means the answer was stopped.
  Before returning, `resume` checks `after` and raises `StreamGoneError` (HTTP 410) when it is
  not, or no longer, a position of this answer: malformed, trimmed, expired, of an older answer,
  past the events of a batch, or ahead of the answer. The final position is valid: nothing
  follows it but the end. The iterator raises `StreamGoneError` when the answer's
  events were trimmed or replaced while it reads.
- Failures of the store raise `LMStreamError` subclasses (e.g. `RedisUnavailableError`), never a
  bare `OSError`: the server answers 503 before a stream starts, and ends a started stream with an
  error chunk (a `ConnectionError` from the store is not the client leaving).
- Answers run either inside the HTTP response (`InlineChatRegistry`: the server runs the request
  and writes its events to the `ChatLog` that `open()` gives; the client leaving cancels it), or
  detached from it (`DetachedChatRegistry`: the server `launch()`es an `Answer`, then follows it
  with `resume()`; a client that leaves may come back, only `stop()` cancels).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .events import Event, EventEmitter

__all__ = [
    "Answer",
    "ChatLog",
    "ChatRegistry",
    "DetachedChatRegistry",
    "InlineChatRegistry",
    "Positioned",
]

#: one event of an answer and its position (a `NamedTuple` such as `lmstream.redis.StreamItem` fits)
Positioned = tuple[str, Event]


class ChatLog(ABC):
    """The events of one answer running in this process, as they happen."""

    @abstractmethod
    def write(self, event: Event) -> str:
        """Record one event and return its position (hot path: synchronous, no I/O wait)."""

    @abstractmethod
    async def aclose(self) -> None:
        """The answer is over (finished, failed or stopped): readers end after its last event."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One chat turn to run, in two forms: `run(emitter)` runs it in this process (its events go
    to `emitter`); `job` is the same turn as JSON for another process (a worker), namely the client's
    `/api/chat` body with its hyperparameters already checked against the server's policy."""

    run: Callable[[EventEmitter], Awaitable[Any]]
    job: Mapping[str, Any]


class ChatRegistry(ABC):
    """Stop and resume: what every registry offers."""

    async def start(self) -> None:  # noqa: B027 - optional hook: most registries need no set-up
        """Called once when the server starts (e.g. to subscribe to stops sent to other nodes)."""

    @abstractmethod
    async def stop(self, chat_id: str) -> bool:
        """Stop the chat's running answer wherever it runs; False when none runs."""

    @abstractmethod
    async def resume(self, chat_id: str, after: str | None = None) -> AsyncIterator[Positioned] | None:
        """Every event of the chat's answer with its position, live; see the module docstring."""

    async def running(self) -> int:
        """How many answers this registry knows to be running (for `/healthz`)."""
        return 0

    async def health(self) -> dict[str, Any]:
        """What `/healthz` adds about the store: `"down"` lists what does not work (in words fit
        for any client: never an address), other keys are figures (queued jobs, live workers)."""
        return {"down": []}

    @property
    def runs_answers_here(self) -> bool:
        """Whether answers run in this process (False: on workers, which prepare the prompt,
        e.g. fit the history to the model's window, themselves)."""
        return True

    async def aclose(self) -> None:  # noqa: B027 - optional hook: most registries hold nothing
        """Release what the registry holds (connections); called once when the server stops."""


class InlineChatRegistry(ChatRegistry):
    """A registry whose answers run inside the HTTP response that asked for them."""

    @abstractmethod
    async def open(self, chat_id: str, stop: Callable[[], None]) -> ChatLog:
        """Register a new answer for `chat_id`; `stop()` cancels it. An earlier running answer of
        the same chat is stopped first (one answer per chat at a time)."""


class DetachedChatRegistry(ChatRegistry):
    """A registry whose answers run outside the HTTP response (a worker, or a task of this process)."""

    @abstractmethod
    async def launch(self, chat_id: str, answer: Answer) -> asyncio.Future[Any] | None:
        """Start the chat's answer, stopping an earlier one. Returns once a `resume()` would see
        the new answer: a future done when the answer ends (the server holds a concurrency slot
        until then: for an answer queued for workers too, so clients that post and leave cannot
        queue more than the node's slots), or None when nothing is to be waited for."""
