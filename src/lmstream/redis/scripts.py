"""The two Lua scripts lmstream runs in Redis, and the named arguments of the flush script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FLUSHED", "FLUSH_SCRIPT", "NOT_CLAIMABLE", "NOT_OWNED", "REAP_SCRIPT", "FlushArgs"]

# The reaper: if nobody holds the chat's lease and its stream did not end, end it with an error
# entry. Atomic, so several readers and workers noticing at once write one error, not several.
# KEYS: 1 stream, 2 lease. ARGV: 1 the error entry's events JSON, 2 ttl s.
REAP_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local f = {}
if #last > 0 then f = last[1][2] end
local s, n, t = 0, 0, nil
for i = 1, #f, 2 do
  if f[i] == 's' then s = tonumber(f[i+1]) elseif f[i] == 'n' then n = tonumber(f[i+1])
  elseif f[i] == 't' then t = f[i+1] end
end
if t == '1' then return 0 end
redis.call('XADD', KEYS[1], '*', 's', tostring(s + n), 'n', '1', 'e', ARGV[1], 't', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


# One flush = one round trip. Fenced: a producer writes only while the chat's lease holds its
# token, so a request that was replaced (or declared dead) can never append to the new stream.
# KEYS: 1 stream, 2 lease. ARGV: the fields of `FlushArgs`, in order (see `FlushArgs.argv`).
# A retry (the previous attempt's reply was lost) neither resets twice nor adds a batch twice.
# With a claim (a queued job), the reset takes the chat over only from the lease value the queue
# left; -2 otherwise (the job expired, another worker runs it, or the chat was posted again).
FLUSH_SCRIPT = """
local token = ARGV[1]
local retry = ARGV[10] == '1'
local holder = redis.call('GET', KEYS[2])
local owned = holder == token
local reset = ARGV[5] == '1' and not (retry and owned)
if reset then
  if ARGV[11] ~= '' and holder ~= ARGV[11] then return -2 end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
elseif not owned then
  return -1
end
local add_batch = ARGV[14] ~= nil
if add_batch and retry then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then
    local f = last[1][2]
    for i = 1, #f, 2 do
      if f[i] == 's' and tonumber(f[i + 1]) >= tonumber(ARGV[12]) then add_batch = false end
    end
  end
end
if add_batch then
  local add = {'XADD', KEYS[1]}
  if ARGV[4] ~= '' then
    add[#add + 1] = 'MAXLEN'; add[#add + 1] = '~'; add[#add + 1] = ARGV[4]
  end
  add[#add + 1] = '*'
  add[#add + 1] = 's'; add[#add + 1] = ARGV[12]
  add[#add + 1] = 'n'; add[#add + 1] = ARGV[13]
  add[#add + 1] = 'e'; add[#add + 1] = ARGV[14]
  if ARGV[9] == '1' then add[#add + 1] = 't'; add[#add + 1] = '1' end
  redis.call(unpack(add))
end
if ARGV[8] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[2])
elseif ARGV[7] == '1' and not reset then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

#: `FLUSH_SCRIPT` replies
FLUSHED, NOT_OWNED, NOT_CLAIMABLE = 1, -1, -2


def _flag(on: bool) -> str:
    return "1" if on else "0"


@dataclass(frozen=True)
class FlushArgs:
    """What one run of `FLUSH_SCRIPT` does. `events` (with `first_seq` and `count`) is the batch
    to append, None for a flush that only renews the lease or refreshes the TTL."""

    token: str  #: the producer's fencing token
    lease_ms: int
    ttl: int  #: seconds
    maxlen: int | None  #: ``XADD MAXLEN ~``; None keeps every entry
    reset: bool = False  #: replace the chat's old stream and take the lease
    release: bool = False  #: delete the lease after writing
    renew: bool = False  #: extend the lease
    refresh_ttl: bool = False  #: EXPIRE the stream
    terminal: bool = False  #: the batch ends the request (``t=1``)
    retry: bool = False  #: the previous attempt's reply was lost: do not reset or append twice
    claim: str | None = None  #: with `reset`: take the chat over only from this lease value
    first_seq: int = 0  #: sequence number of the batch's first event
    count: int = 0
    events: bytes | None = None

    def argv(self) -> list[Any]:
        """The script's ARGV, in the order it reads them."""
        args: list[Any] = [
            self.token,
            self.lease_ms,
            self.ttl,
            "" if self.maxlen is None else self.maxlen,
            _flag(self.reset),
            _flag(self.release),
            _flag(self.renew),
            _flag(self.refresh_ttl),
            _flag(self.terminal),
            _flag(self.retry),
            self.claim or "",
        ]
        if self.events is not None:
            args += [self.first_seq, self.count, self.events]
        return args
