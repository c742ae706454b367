"""Key and channel names: what lmstream keeps in Redis, and where.

Every key of a chat is ``{prefix}:<family>:{chat_id}``: the family (``chat``, ``lease``, ``stop``)
comes before the client-chosen id, so no id can name a key of another family, another chat's
key, or one of lmstream's own (the job queue is ``{prefix}:q:jobs``). Pub/sub channels live
apart from keys in Redis, so ``{prefix}:stop`` and ``{prefix}:notify`` cannot collide with them.

The response cache (`lmstream.cache.redis_store`, below this transport) keeps its keys beside
these, in the family ``cache``: ``{prefix}:cache:entry:{sha256 of the request}`` (a finished
answer, with its TTL), ``{prefix}:cache:lease:{sha256}`` (the run generating it now) and
``{prefix}:cache:run:{run id}`` (that run's events, a stream other nodes read) and
``{prefix}:cache:readers:{run id}`` (how many requests on other nodes read it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Keys"]

DEFAULT_PREFIX = "lmstream"


@dataclass(frozen=True)
class Keys:
    """Key names of one deployment. With `hash_tag=True` every key of a chat carries ``{chat_id}``
    so a Redis Cluster puts them in one slot (the flush and reaper scripts touch two at once)."""

    prefix: str = DEFAULT_PREFIX
    hash_tag: bool = False

    def _key(self, family: str, chat_id: str) -> str:
        tag = f"{{{chat_id}}}" if self.hash_tag else chat_id
        return f"{self.prefix}:{family}:{tag}"

    def stream(self, chat_id: str) -> str:
        """The chat's events (one Redis stream; see `codec`)."""
        return self._key("chat", chat_id)

    def lease(self, chat_id: str) -> str:
        """Exists while a producer (or the queue, before a worker takes the job) owns the chat."""
        return self._key("lease", chat_id)

    def stop(self, chat_id: str) -> str:
        """Set by a stop request, so a runner that starts after the broadcast still sees it."""
        return self._key("stop", chat_id)

    def chat_keys(self, chat_id: str) -> tuple[str, str, str]:
        """Every key lmstream may write for the chat: its stream, lease and stop key."""
        return self.stream(chat_id), self.lease(chat_id), self.stop(chat_id)

    @property
    def stop_channel(self) -> str:
        return f"{self.prefix}:stop"

    @property
    def notify_channel(self) -> str:
        """Producers PUBLISH the stream keys they appended to here (newline-separated), so a
        multiplexed reader fetches only the streams that changed (see `StreamHub`)."""
        return f"{self.prefix}:notify"

    @property
    def workers(self) -> str:
        """The workers' heartbeats (a sorted set: name -> time of the last beat), for `/healthz`."""
        return f"{self.prefix}:q:workers"

    @property
    def queue(self) -> str:
        """The job stream that web nodes add to and workers read through a consumer group."""
        return f"{self.prefix}:q:jobs"
