"""Pending tool approvals in Redis (`lmstream serve --redis`): the answer may reach any web node,
even after the node that asked died.

Keys (prefix `lmstream`): `{p}:apr:{approval_id}` -> the step's group id; `{p}:aprs:{group}` ->
the saved step as JSON (both expire after the TTL); `{p}:apr-known:{approval_id}` (kept a day
longer, to tell "expired" from "never asked") and `{p}:apr-used:{approval_id}` (answered).
Taking a step is one GETDEL, so two nodes answering at once cannot both run the calls. The steps
are bounded (`{p}:aprs-index:all`, `{p}:aprs-size:all`, `{p}:aprs-chat:{chat_id}`): one per chat,
a count and a total of bytes, the oldest going first.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Any

from .. import _json
from ..approval import ApprovalError, PendingAnswer, PendingStep
from ..errors import RedisUnavailableError
from ..prompt import Content, Message
from ..protocols.ui_approvals import DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES, Check
from ..types import Attachment, ThinkingBlock, ToolCall, ToolResult
from .keys import DEFAULT_PREFIX

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisApprovalStore", "step_from_json", "step_to_json"]

_KEEP_KNOWN = 86_400  # seconds an expired id is still told apart from an unknown one


def _content(c: Content) -> dict[str, Any]:
    if isinstance(c, str):
        return {"t": "text", "text": c}
    if isinstance(c, ThinkingBlock):
        return {"t": "thinking", "text": c.text, "signature": c.signature}
    if isinstance(c, ToolCall):
        sig: Any = c.signature
        if isinstance(sig, bytes):
            sig = {"b64": base64.b64encode(sig).decode()}
        return {"t": "call", "id": c.id, "name": c.name, "arguments": c.arguments, "signature": sig}
    if isinstance(c, ToolResult):
        return {
            "t": "result",
            "id": c.id,
            "name": c.name,
            "output": c.output,
            "is_error": c.is_error,
            "denied": c.denied,
        }
    return {"t": "file", "data": base64.b64encode(c.data).decode(), "mime_type": c.mime_type, "filename": c.filename}


def _uncontent(d: dict[str, Any]) -> Content:
    t = d["t"]
    if t == "text":
        return str(d["text"])
    if t == "thinking":
        return ThinkingBlock(d["text"], d.get("signature"))
    if t == "call":
        sig = d.get("signature")
        if isinstance(sig, dict):
            sig = base64.b64decode(sig["b64"])
        return ToolCall(d["id"], d["name"], d.get("arguments") or {}, sig)
    if t == "result":
        return ToolResult(d["id"], d["name"], d["output"], bool(d.get("is_error")), denied=bool(d.get("denied")))
    return Attachment(base64.b64decode(d["data"]), d["mime_type"], d.get("filename"))


def step_to_json(pending: PendingAnswer) -> str:
    step = pending.step
    return _json.dumps(
        {
            "chat_id": pending.chat_id,
            "message_id": pending.message_id,
            "step": step.step,
            "approvals": step.approvals,
            "calls": [_content(c) for c in step.calls],
            "messages": [{"role": m.role, "contents": [_content(c) for c in m.contents]} for m in step.messages],
        }
    )


def step_from_json(raw: str | bytes) -> PendingAnswer:
    d = _json.loads(raw)
    calls = [_uncontent(c) for c in d["calls"]]
    messages = [Message(m["role"], [_uncontent(c) for c in m["contents"]]) for m in d["messages"]]
    step = PendingStep(messages, [c for c in calls if isinstance(c, ToolCall)], dict(d["approvals"]), int(d["step"]))
    return PendingAnswer(step, d["chat_id"], d["message_id"])


# Save one step within the bounds, atomically. KEYS: 1 the index (sorted set: group -> deadline
# ms), 2 the sizes (hash: group -> bytes), 3 the chat's current group, 4 the new step's key.
# ARGV: 1 now ms, 2 ttl ms, 3 size, 4 max steps, 5 max bytes, 6 step key prefix, 7 group, 8 JSON.
# Expired steps leave the index; the chat's earlier step goes (the chat moved on); then the
# oldest steps go while the count or the bytes are over their bounds.
_SAVE_SCRIPT = """
local function drop(g)
  redis.call('DEL', ARGV[6] .. g)
  redis.call('ZREM', KEYS[1], g)
  redis.call('HDEL', KEYS[2], g)
end
for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do drop(g) end
local old = redis.call('GET', KEYS[3])
if old then drop(old) end
redis.call('SET', KEYS[4], ARGV[8], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[2])
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[7])
redis.call('HSET', KEYS[2], ARGV[7], ARGV[3])
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(v) end
local dropped = 0
while redis.call('ZCARD', KEYS[1]) > 1 and
      (redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[4]) or total > tonumber(ARGV[5])) do
  local g = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  total = total - tonumber(redis.call('HGET', KEYS[2], g) or '0')
  drop(g)
  dropped = dropped + 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return dropped
"""


class RedisApprovalStore:
    """`ApprovalStore` on Redis: any node answers; an answer is taken once.

    Bounded like the in-memory store: one waiting step per chat, at most `max_pending` steps and
    `max_bytes` of them in all (the oldest goes first; its answer then gets 410)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.redis: Any = redis
        self.prefix = prefix
        self.max_pending = max_pending
        self.max_bytes = max_bytes

    def _k(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    async def save(self, pending: PendingAnswer, ttl: float) -> None:
        group = secrets.token_hex(12)
        ms = max(1, int(ttl * 1000))
        raw = step_to_json(pending)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.time()
                for aid in pending.step.approvals:
                    pipe.set(self._k("apr", aid), group, px=ms)
                    pipe.set(self._k("apr-known", aid), "1", px=ms + _KEEP_KNOWN * 1000)
                now = await pipe.execute()
            now_ms = int(now[0][0]) * 1000 + int(now[0][1]) // 1000
            keys = [self._k("aprs-index", "all"), self._k("aprs-size", "all"), self._k("aprs-chat", pending.chat_id)]
            await self.redis.eval(
                _SAVE_SCRIPT,
                4,
                *keys,
                self._k("aprs", group),
                now_ms,
                ms,
                len(raw),
                self.max_pending,
                self.max_bytes,
                f"{self.prefix}:aprs:",
                group,
                raw,
            )
        except OSError as exc:  # redis-py's ConnectionError is an OSError
            raise RedisUnavailableError(f"could not save the pending approval in Redis: {exc}") from exc

    async def take(self, approval_ids: list[str], check: Check | None = None) -> PendingAnswer:
        try:
            groups = await self.redis.mget([self._k("apr", a) for a in approval_ids])
            for aid, group in zip(approval_ids, groups, strict=True):
                if group is None:
                    raise await self._gone(aid)
            if len(set(groups)) != 1:
                raise ApprovalError("the answered approvals belong to different tool steps", 409)
            group = groups[0].decode() if isinstance(groups[0], bytes) else str(groups[0])
            if check is not None:  # a wrong answer must not use the step up: check, then take
                seen = await self.redis.get(self._k("aprs", group))
                if seen is None:
                    raise await self._gone(approval_ids[0])
                check(step_from_json(seen))
            raw = await self.redis.getdel(self._k("aprs", group))
            if raw is None:  # another node took it a moment ago, or it just expired
                raise await self._gone(approval_ids[0])
            pending = step_from_json(raw)
            async with self.redis.pipeline(transaction=True) as pipe:
                for aid in pending.step.approvals:
                    pipe.delete(self._k("apr", aid))
                    pipe.set(self._k("apr-used", aid), "1", ex=_KEEP_KNOWN)
                pipe.zrem(self._k("aprs-index", "all"), group)
                pipe.hdel(self._k("aprs-size", "all"), group)
                await pipe.execute()
            return pending
        except OSError as exc:
            raise RedisUnavailableError(f"could not read the pending approval from Redis: {exc}") from exc

    async def _gone(self, approval_id: str) -> ApprovalError:
        used, known = await self.redis.mget([self._k("apr-used", approval_id), self._k("apr-known", approval_id)])
        if used is not None:
            return ApprovalError(f"approval {approval_id!r} was already answered", 409)
        if known is not None:
            return ApprovalError(f"approval {approval_id!r} expired: nobody answered in time; ask again", 410)
        return ApprovalError(f"no approval {approval_id!r} is waiting", 409)

