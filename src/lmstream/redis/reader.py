"""`RedisStreamReader`: replay or resume a chat's stream from Redis, exactly once, in order.

Why the counters: `XREAD` from an id that was trimmed silently returns the first surviving entry,
a gap nobody notices. Every entry carries the sequence number of its first event, so the reader
checks that each entry starts where the previous one ended, and that a resume position still
exists, and raises `StreamGoneError` instead of skipping.

A producer that died without writing `done`/`error` (its lease expired) would leave readers
blocked forever; instead a reader that waited a block interval runs the reaper script, which ends
such a stream with one `error` entry, written once for every reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..errors import StreamGoneError
from ..events import Event, EventLevel, EventType
from .codec import StreamItem, decode_events, encode_events, entry_start, field, make_position, parse_position, s
from .connection import Retrying, naming_redis
from .hub import Follower, StreamHub
from .options import DEFAULT_OPTIONS, RedisOptions
from .scripts import REAP_SCRIPT

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStreamReader", "reap"]

_PAGE = 128


async def reap(
    redis: Any,
    chat_id: str,
    *,
    options: RedisOptions = DEFAULT_OPTIONS,
    request_id: str | None = None,
    message: str | None = None,
) -> bool:
    """End the chat's stream with an `error` event if its producer is gone. True if it wrote one.

    What the reaper knows is only that the chat's lease expired: nobody renewed it for the whole
    lease. The error says so (`LeaseExpiredError`), with the causes it may have had."""
    keys = options.keys
    if message is None:
        message = (
            f"the answer's lease expired: the process running it did not renew it for {options.lease:g} s "
            "(it died or stalled, it could not reach Redis, or no worker took the queued job); "
            "the answer is incomplete and was not re-run"
        )
    meta = {"request_id": request_id, "error_type": "LeaseExpiredError"}
    ev = Event(message, EventType.ERROR, EventLevel.ERROR, meta)
    key = keys.stream(chat_id)
    res = await redis.eval(REAP_SCRIPT, 2, key, keys.lease(chat_id), encode_events([ev]), str(int(options.ttl)))
    if int(res) != 1:
        return False
    await redis.publish(keys.notify_channel, key)  # readers elsewhere: the error entry is there
    return True


class RedisStreamReader:
    """Reads chats' streams. `block` is how long one `XREAD BLOCK` waits before the reader checks
    that the producer is still alive (keep it well under the lease)."""

    def __init__(
        self,
        redis: Redis,
        *,
        options: RedisOptions = DEFAULT_OPTIONS,
        block: float = 1.0,
        page: int = _PAGE,
        multiplex: bool = False,
        notified: bool = True,
    ) -> None:
        self.redis: Any = redis  # redis-py's precise stubs fight its dynamic replies
        self._r: Any = Retrying(redis)  # reads are idempotent: survive a stale connection
        self.page = page
        self.options = options
        self.keys = options.keys
        self.block_ms = max(10, int(min(block, options.lease / 5) * 1000))
        #: with `multiplex=True` all live reads share one connection (see `StreamHub`); call `aclose()`.
        #: `notified=True`: read only the streams producers announce, plus a full read every `block`
        #: (`False`: one XREAD BLOCK over every followed stream, for producers that do not publish)
        channel = self.keys.notify_channel if notified else None
        self.hub = StreamHub(redis, block_ms=self.block_ms, page=page, channel=channel) if multiplex else None

    async def aclose(self) -> None:
        if self.hub is not None:
            await self.hub.aclose()

    async def exists(self, chat_id: str) -> bool:
        """Whether there is anything to replay for the chat (a stream, or a request about to start)."""
        async with naming_redis(self.redis):
            return bool(await self._r.exists(self.keys.stream(chat_id), self.keys.lease(chat_id)))

    async def validate(self, chat_id: str, position: str) -> None:
        """Raise `StreamGoneError` unless `position` names an event still in the chat's stream
        (its entry is there and holds that many events)."""
        entry_id, index = parse_position(position)
        async with naming_redis(self.redis):
            found = await self._r.xrange(self.keys.stream(chat_id), min=entry_id, max=entry_id, count=1)
        if not found or index >= int(field(found[0][1], "n") or 0):
            raise StreamGoneError(
                f"chat {chat_id!r}: position {position} is no longer in Redis (trimmed or expired); "
                "replay from the start instead"
            )

    async def read(self, chat_id: str, after: str | None = None) -> AsyncIterator[StreamItem]:
        """Yield `StreamItem(id, event)` after position `after` (all of them when None), blocking
        while the request runs; ends after `done`/`error`. Raises `StreamGoneError` when `after`
        (or, for a full replay, the start) is no longer in Redis, `RedisUnavailableError` when Redis fails."""
        key = self.keys.stream(chat_id)
        async with naming_redis(self.redis):
            if after is not None:
                entry_id, index = parse_position(after)
                page = await self._r.xrange(key, min=entry_id, max="+", count=self.page)
                if not page or s(page[0][0]) != entry_id:
                    raise StreamGoneError(
                        f"chat {chat_id!r}: position {after} is no longer in Redis (trimmed or expired); "
                        "replay from the start instead"
                    )
                first_s = entry_start(page[0][1])
                expected = first_s + index + 1
                skip = index + 1
                last_id = "0-0"
            else:
                page = await self._r.xrange(key, min="-", max="+", count=self.page)
                expected, skip, last_id = 0, 0, "0-0"
                # (the stream too: it may have been written, lease released, since the XRANGE)
                if not page and not await self._r.exists(key, self.keys.lease(chat_id)):
                    return  # nothing to replay
            request_id: str | None = None
            follower: Follower | None = None
            try:
                while True:
                    for entry_id_raw, fields in page:
                        entry_id = s(entry_id_raw)
                        last_id = entry_id
                        start = entry_start(fields)
                        if start + skip != expected:
                            raise StreamGoneError(
                                f"chat {chat_id!r}: events {expected}..{start + skip - 1} are no longer in Redis "
                                "(trimmed, expired, or replaced by a newer request)"
                            )
                        events = decode_events(field(fields, "e"))
                        for i in range(skip, len(events)):
                            ev = events[i]
                            request_id = ev.metadata.get("request_id", request_id)
                            expected += 1
                            yield StreamItem(make_position(entry_id, i), ev)
                        skip = 0
                        if s(field(fields, "t") or "") == "1":
                            return
                    if len(page) >= self.page and follower is None:
                        page = await self._r.xrange(key, min="(" + last_id, max="+", count=self.page)
                        continue
                    if self.hub is not None and follower is None:
                        follower = self.hub.follow(key, last_id)
                    page = await self._wait(chat_id, key, last_id, expected, request_id, follower)
                    if not page:
                        return
            finally:
                if follower is not None and self.hub is not None:
                    self.hub.unfollow(follower)

    async def _wait(
        self,
        chat_id: str,
        key: str,
        last_id: str,
        expected: int,
        request_id: str | None,
        follower: Follower | None = None,
    ) -> list[tuple[Any, Any]]:
        """Block for entries after `last_id`; between blocks, make sure the producer is alive."""
        while True:
            if follower is not None:
                got = await follower.next(self.block_ms / 1000)
                if got:
                    return got
            else:
                res = await self._r.xread({key: last_id}, count=self.page, block=self.block_ms)
                if res:
                    return list(res[0][1])
            # Nothing new for a whole block: is anyone still producing?
            if await reap(self._r, chat_id, options=self.options, request_id=request_id):
                if self.hub is not None:
                    self.hub.poke(key)
                continue  # the error entry we (or another reader) wrote comes next
            if not await self._r.exists(key, self.keys.lease(chat_id)):
                if expected == 0 and last_id == "0-0":
                    return []  # nothing ever existed: an empty stream
                raise StreamGoneError(f"chat {chat_id!r}: the stream expired before it ended")
            await asyncio.sleep(0)

    async def events(self, chat_id: str, after: str | None = None) -> AsyncIterator[Event]:
        """Like `read`, events only."""
        async for item in self.read(chat_id, after):
            yield item.event
