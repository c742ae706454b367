"""The approvals a running request waits for, and their answers: the engine's side of approval.

`lmstream.approval` decides which tool calls need a person and runs the tool step; the waiting
itself lives here, so that a request's own stream (`RequestStream.approve()` / `deny()`) answers
without importing the tool loop above the engine. Ids are process-wide (random, unguessable):
any task or thread may answer, e.g. a server handler that is not the one streaming the request.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

from ..errors import LMStreamError
from ..types import ToolCall

__all__ = ["ApprovalError", "Decision", "answer", "close", "new_approval_id", "register", "waiting"]


class ApprovalError(LMStreamError, LookupError):
    """An approval id that cannot be answered: unknown or already answered (409), or expired
    (410). `status_code` says which, for a server to pass on."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's answer to one approval request."""

    approved: bool
    reason: str | None = None


@dataclass(slots=True)
class _Pending:
    request_id: str
    call: ToolCall
    future: asyncio.Future[Decision] = field(repr=False)


# keyed by approval id
_pending: dict[str, _Pending] = {}
# Ids that were answered or timed out, so a second answer gets 409/410 and not "unknown"
_closed: OrderedDict[str, int] = OrderedDict()
_CLOSED_KEEP = 10_000


def new_approval_id() -> str:
    return f"apr_{secrets.token_urlsafe(16)}"


def _close(approval_id: str, status: int) -> None:
    _pending.pop(approval_id, None)
    _closed[approval_id] = status
    while len(_closed) > _CLOSED_KEEP:
        _closed.popitem(last=False)


def answer(approval_id: str, approved: bool, reason: str | None = None, *, request_id: str | None = None) -> None:
    """Approve or deny a waiting call. `request_id`, when given, must be the call's request
    (a stream answers only its own approvals). Raises `ApprovalError` for an id that is not
    waiting: 409 unknown or already answered, 410 timed out."""
    pending = _pending.get(approval_id)
    if pending is None or (request_id is not None and pending.request_id != request_id):
        status = _closed.get(approval_id) if pending is None else None
        if status == 409:
            raise ApprovalError(f"approval {approval_id!r} was already answered", 409)
        if status == 410:
            raise ApprovalError(f"approval {approval_id!r} expired: nobody answered within approval_timeout", 410)
        raise ApprovalError(f"no approval {approval_id!r} is waiting in this request", 409)
    fut = pending.future
    _close(approval_id, 409)
    # through the request's loop: a UI thread (or another loop) may answer
    fut.get_loop().call_soon_threadsafe(_resolve, fut, Decision(approved, reason))


def _resolve(fut: asyncio.Future[Decision], decision: Decision) -> None:
    if not fut.done():
        fut.set_result(decision)


def register(request_id: str, call: ToolCall) -> tuple[str, asyncio.Future[Decision]]:
    """A new approval for `call` of request `request_id`: its id, and the future its answer sets."""
    approval_id = new_approval_id()
    future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
    _pending[approval_id] = _Pending(request_id, call, future)
    return approval_id, future


def waiting(approval_id: str) -> bool:
    return approval_id in _pending


def close(approval_id: str, status: int) -> None:
    """No more answers: 409 (answered) or 410 (timed out, or its request went away)."""
    _close(approval_id, status)
