"""Tool approval over HTTP: pending steps kept by the server, and the browser's answers.

`/api/chat` cannot keep a request open while a person decides: the answer stops at the
`tool-approval-request` chunks (finish reason `tool-calls`) and its tool step is saved here,
under its approval ids, for `ttl` seconds. The `ai` client's `addToolApprovalResponse` then posts
the chat again with the tool parts in state `approval-responded`; that request takes the saved
step (once: a second answer gets 409, a late one 410) and continues the same assistant message.
The model's calls come from the saved step, never from the client's copy of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..approval import ApprovalError, Decision, PendingAnswer
from ..cache import request_context
from .errors import BadRequest

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_BYTES",
    "ApprovalStore",
    "Continuation",
    "InMemoryApprovalStore",
    "PendingAnswer",
    "parse_approval_answers",
    "pending_size",
]


@dataclass(slots=True)
class Continuation:
    """What the browser answered: the assistant message's id and one decision per approval id,
    with the tool call id the client showed it for."""

    message_id: str
    answers: dict[str, tuple[str, Decision]]


#: what the stores keep at most by default: pending steps, and their bytes (a step holds the
#: whole conversation, up to a request body each); past either the oldest waiting step goes
DEFAULT_MAX_PENDING = 1_000
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024

Check = Callable[[PendingAnswer], None]


class ApprovalStore(Protocol):
    """Where pending approvals wait (this process's memory, or Redis for any node)."""

    async def save(self, pending: PendingAnswer, ttl: float) -> None: ...

    async def take(self, approval_ids: list[str], check: Check | None = None) -> PendingAnswer:
        """Remove and return the step these ids belong to; `ApprovalError` 409 (unknown, already
        answered, or ids of different steps) or 410 (expired). `check(pending)` runs before the
        step is removed: when it raises, the step stays for the rightful answer."""
        ...


def pending_size(pending: PendingAnswer) -> int:
    """About how many bytes a saved step holds (its texts, arguments and attachments)."""
    total = 256
    for m in pending.step.messages:
        for c in m.contents:
            if isinstance(c, str):
                total += len(c)
            else:
                data = getattr(c, "data", None)
                total += len(data) if isinstance(data, bytes) else len(repr(c))
    return total + sum(len(repr(c.arguments)) for c in pending.step.calls)


class InMemoryApprovalStore:
    """Pending approvals of one process; an answer must reach the node that asked.

    Bounded: one waiting step per chat (a newer one replaces it), at most `max_pending` steps and
    `max_bytes` in all; past a bound the oldest step of the key (tenant) holding the most goes
    (its answer then gets 410), so a flood of unanswered approvals never grows memory nor locks
    anyone out, and a flood by one key pushes out its own steps before anyone else's."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING, max_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self._by_id: dict[str, tuple[PendingAnswer, float]] = {}
        self._steps: OrderedDict[int, tuple[PendingAnswer, int, str | None]] = OrderedDict()  # oldest first
        self._held: dict[str | None, int] = {}  # bytes held per key (tenant)
        self._by_chat: dict[str, PendingAnswer] = {}
        self._gone: OrderedDict[str, int] = OrderedDict()  # answered (409) or expired (410)
        self._max = max_pending
        self._max_bytes = max_bytes
        self.bytes = 0
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._steps)

    def _drop(self, pending: PendingAnswer, status: int) -> None:
        entry = self._steps.pop(id(pending), None)
        if entry is not None:
            self.bytes -= entry[1]
            left = self._held.get(entry[2], 0) - entry[1]
            if left > 0:
                self._held[entry[2]] = left
            else:
                self._held.pop(entry[2], None)
        if self._by_chat.get(pending.chat_id) is pending:
            del self._by_chat[pending.chat_id]
        for aid in pending.step.approvals:
            self._by_id.pop(aid, None)
            self._gone[aid] = status
        while len(self._gone) > 4 * self._max:
            self._gone.popitem(last=False)

    def _sweep(self, now: float) -> None:
        expired = {id(p): p for p, deadline in self._by_id.values() if deadline <= now}
        for p in expired.values():
            self._drop(p, 410)

    async def save(self, pending: PendingAnswer, ttl: float) -> None:
        async with self._lock:
            now = time.monotonic()
            self._sweep(now)
            earlier = self._by_chat.get(pending.chat_id)
            if earlier is not None:  # the chat moved on: its earlier question is void
                self._drop(earlier, 410)
            size = pending_size(pending)
            tenant = request_context()[0]  # the key that asked (a server sets it per request)
            while self._steps and (len(self._steps) >= self._max or self.bytes + size > self._max_bytes):
                heaviest = max(self._held, key=lambda k: self._held[k])
                oldest = next(p for p, _, k in self._steps.values() if k == heaviest)
                self._drop(oldest, 410)
            self._steps[id(pending)] = (pending, size, tenant)
            self._held[tenant] = self._held.get(tenant, 0) + size
            self.bytes += size
            self._by_chat[pending.chat_id] = pending
            for aid in pending.step.approvals:
                self._by_id[aid] = (pending, now + ttl)

    async def take(self, approval_ids: list[str], check: Check | None = None) -> PendingAnswer:
        async with self._lock:
            self._sweep(time.monotonic())
            found: list[PendingAnswer] = []
            for aid in approval_ids:
                entry = self._by_id.get(aid)
                if entry is None:
                    raise _gone(aid, self._gone.get(aid))
                found.append(entry[0])
            if not found or any(p is not found[0] for p in found):
                raise ApprovalError("the answered approvals belong to different tool steps", 409)
            if check is not None:
                check(found[0])  # a wrong answer leaves the step for the right one
            self._drop(found[0], 409)
            return found[0]


def _gone(approval_id: str, status: int | None) -> ApprovalError:
    if status == 410:
        return ApprovalError(f"approval {approval_id!r} expired: nobody answered in time; ask again", 410)
    if status == 409:
        return ApprovalError(f"approval {approval_id!r} was already answered", 409)
    return ApprovalError(f"no approval {approval_id!r} is waiting (unknown, or answered on a node without it)", 409)


def parse_approval_answers(body: Any) -> Continuation | None:
    """The approval answers in a `/api/chat` body, or None when it is an ordinary turn (the last
    message is not an assistant message with tool parts in state `approval-responded`)."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("parts"), list):
        return None
    answers: dict[str, tuple[str, Decision]] = {}
    for j, p in enumerate(last["parts"]):
        if not isinstance(p, dict) or p.get("state") != "approval-responded":
            continue
        where = f"messages[{len(messages) - 1}].parts[{j}]"
        approval = p.get("approval")
        if not isinstance(approval, dict) or not isinstance(approval.get("id"), str):
            raise BadRequest(f"{where}.approval.id", "an approval-responded tool part needs approval.id")
        if not isinstance(approval.get("approved"), bool):
            raise BadRequest(f"{where}.approval.approved", "must be true or false")
        reason = approval.get("reason")
        reason = reason[:2000] if isinstance(reason, str) else None
        answers[approval["id"]] = (str(p.get("toolCallId", "")), Decision(approval["approved"], reason))
    if not answers:
        return None
    message_id = last.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise BadRequest(f"messages[{len(messages) - 1}].id", "the assistant message needs its id")
    return Continuation(message_id, answers)


async def take_decisions(
    store: ApprovalStore, chat_id: str, cont: Continuation
) -> tuple[PendingAnswer, dict[str, Decision]]:
    """The saved step these answers are for, and the decisions by tool call id. The client's
    message and tool call ids must be the ones the step was asked under (409 otherwise)."""
    def check(pending: PendingAnswer) -> None:
        if pending.chat_id != chat_id or pending.message_id != cont.message_id:
            raise ApprovalError("these approvals were asked in another chat or message", 409)
        for aid, (call_id, _) in cont.answers.items():
            if pending.step.approvals.get(aid) != call_id:
                raise ApprovalError(f"approval {aid!r} was asked for another tool call", 409)

    pending = await store.take(list(cont.answers), check)  # checked before it is taken
    decisions = {call_id: decision for call_id, decision in cont.answers.values()}
    return pending, decisions
