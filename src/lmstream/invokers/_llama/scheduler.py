"""Slots, the FIFO queue, prefix reuse and the plan of one step. No llama.cpp calls here
except through `Context`, so the policy reads apart from the pointers.

A slot is one llama.cpp sequence. It remembers which tokens its KV cells hold, also after its
request finished: a new request goes to the free slot sharing the longest prefix with its
prompt (slot affinity: the same system prompt, or the previous turn of a conversation), or
copies a busy slot's cells when that one shares much more. Only the rest is evaluated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .native import Context
from .sampling import Sampler
from .text import TextTail

__all__ = ["Job", "Scheduler", "Slot", "common_prefix"]

#: copy a busy slot's cells only when it saves at least this many tokens over the best free slot
MIN_COPY_GAIN = 16


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Job:
    """One request inside the engine: its prompt, its samplers and where its output goes.

    `post(item)` hands one output item to the request's event loop (the engine batches the
    actual thread hand-off per step). `cancelled` is set from the loop's side; the engine
    frees the job's sequence at its next step.
    """

    __slots__ = (
        "cached",
        "cancelled",
        "max_tokens",
        "n_out",
        "position",
        "post",
        "sampler",
        "slot",
        "tail",
        "tokens",
    )

    def __init__(
        self, tokens: list[int], sampler: Sampler, max_tokens: int, stops: tuple[str, ...], post: Callable[[Any], None]
    ) -> None:
        self.tokens = tokens
        self.sampler: Sampler | None = sampler
        self.max_tokens = max_tokens
        self.tail = TextTail(stops)
        self.post = post
        self.cancelled = False
        self.position = 0  # last queue position announced (0: never queued)
        self.slot: Slot | None = None
        self.n_out = 0
        self.cached = 0  # prompt tokens whose KV was reused

    def release(self) -> None:
        if self.sampler is not None:
            self.sampler.free()
            self.sampler = None


class Slot:
    """One sequence of the context and what its cells hold (positions 0..len(cached)-1)."""

    __slots__ = ("cached", "job", "last_used", "next_token", "pending", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cached: list[int] = []
        self.job: Job | None = None
        self.pending: list[int] = []  # prompt tokens still to evaluate
        self.next_token: int | None = None  # sampled, to be evaluated next step
        self.last_used = 0


class Scheduler:
    """The FIFO queue and the slots; `plan()` builds one step's batch within a token budget."""

    def __init__(self, ctx: Context, budget: int) -> None:
        self.ctx = ctx
        self.budget = budget
        self.slots = [Slot(i) for i in range(ctx.n_seq)]
        self.queue: deque[Job] = deque()
        self._clock = 0

    @property
    def running(self) -> int:
        return sum(s.job is not None for s in self.slots)

    def drop_cancelled(self) -> None:
        """Free the sequences of cancelled jobs (their cells are cleared) and unqueue the rest."""
        for slot in self.slots:
            job = slot.job
            if job is not None and job.cancelled:
                self.ctx.clear(slot.seq)
                slot.cached = []
                self.vacate(slot)
        if any(j.cancelled for j in self.queue):
            for job in [j for j in self.queue if j.cancelled]:
                job.release()
            self.queue = deque(j for j in self.queue if not j.cancelled)

    def vacate(self, slot: Slot) -> None:
        job = slot.job
        if job is not None:
            job.release()
            job.slot = None
        slot.job = None
        slot.pending = []
        slot.next_token = None

    def assign(self) -> list[Job]:
        """Give free slots to the head of the queue, in order; returns the jobs started."""
        started = []
        while self.queue:
            free = [s for s in self.slots if s.job is None]
            if not free:
                break
            job = self.queue.popleft()
            self._place(job, free)
            started.append(job)
        return started

    def _place(self, job: Job, free: list[Slot]) -> None:
        tokens = job.tokens
        self._clock += 1
        # the free slot sharing the longest prefix; among equals the least recently used
        slot = max(free, key=lambda s: (common_prefix(s.cached, tokens), -s.last_used))
        keep = common_prefix(slot.cached, tokens)
        donor = max(self.slots, key=lambda s: common_prefix(s.cached, tokens))
        donor_keep = common_prefix(donor.cached, tokens)
        if donor is not slot and donor_keep >= keep + MIN_COPY_GAIN:
            slot = min(free, key=lambda s: s.last_used)
            self.ctx.copy(donor.seq, slot.seq)
            slot.cached = list(donor.cached)
            keep = donor_keep
        keep = min(keep, len(tokens) - 1)  # evaluate at least the last prompt token (its logits)
        if keep < len(slot.cached):
            self.ctx.truncate(slot.seq, keep)
            del slot.cached[keep:]
        slot.job = job
        slot.pending = tokens[keep:]
        slot.next_token = None
        slot.last_used = self._clock
        job.slot = slot
        job.cached = keep

    def plan(self) -> tuple[list[tuple[int, int, int, bool]], list[tuple[Slot, int, int]]]:
        """One step: a token for every generating slot, then prompt chunks in FIFO order.

        Returns the batch entries and, per slot in the batch, (slot, tokens added, index of
        its logits row or -1 when its prompt is not finished yet).
        """
        entries: list[tuple[int, int, int, bool]] = []
        rows: list[tuple[Slot, int, int]] = []
        for slot in self.slots:
            if slot.job is not None and slot.next_token is not None:
                rows.append((slot, 1, len(entries)))
                entries.append((slot.next_token, len(slot.cached), slot.seq, True))
        room = self.budget - len(entries)
        for slot in sorted((s for s in self.slots if s.job is not None and s.pending), key=lambda s: s.last_used):
            if room <= 0:
                break
            take = slot.pending[:room]
            base = len(slot.cached)
            done = len(take) == len(slot.pending)
            for j, tok in enumerate(take):
                entries.append((tok, base + j, slot.seq, done and j == len(take) - 1))
            rows.append((slot, len(take), len(entries) - 1 if done else -1))
            room -= len(take)
        return entries, rows

    def commit(self, rows: list[tuple[Slot, int, int]]) -> None:
        """After a successful decode: the evaluated tokens are in the cells now."""
        for slot, n, _ in rows:
            if slot.next_token is not None and n == 1 and not slot.pending:
                slot.cached.append(slot.next_token)
                slot.next_token = None
            else:
                slot.cached.extend(slot.pending[:n])
                del slot.pending[:n]
