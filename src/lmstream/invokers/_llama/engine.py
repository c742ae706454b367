"""The engine: one model, one context of `parallel` sequences, one long-lived thread.

Each step is one `llama_decode`: a token for every generating sequence plus chunks of new
prompts, within a token budget, so a long prompt stalls running streams for one chunk at most.
Output crosses to each request's event loop once per step (one `call_soon_threadsafe` per
loop, not per token).

Why one long-lived thread: llama.cpp's compute threads (OpenMP) belong to the thread that
calls it; a new thread per request builds a new team that fights the old one for the cores.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...engine.deltas import FinishDelta, StatusDelta, UsageDelta
from ...errors import ProviderError
from .native import Context, free_models, load_model
from .scheduler import Job, Scheduler, Slot

__all__ = ["DONE", "STARTED", "Engine", "EngineConfig", "engine_for", "running_engine", "sink_for"]

#: internal markers on a request's queue: its generation started / its output is complete
STARTED = object()
DONE = object()


@dataclass(frozen=True)
class EngineConfig:
    """What makes two engines different (the cache key)."""

    path: str
    parallel: int
    n_ctx: int  # per sequence
    n_threads: int
    n_threads_batch: int
    budget: int  # tokens per step


class Engine:
    """Serves many generations at once on one llama.cpp context (thread-safe `submit`)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.model = load_model(config.path)
        self.ctx = Context(
            self.model, config.parallel, config.n_ctx, config.budget, config.n_threads, config.n_threads_batch
        )
        self.n_ctx = self.ctx.n_ctx_seq
        self.sched = Scheduler(self.ctx, config.budget)
        self._cv = threading.Condition()
        self._inbox: list[Job] = []
        self._closing = False
        self._decoding = False
        self._out: dict[Any, list[tuple[Job, Any]]] = {}
        self._thread = threading.Thread(target=self._run, name="lmstream-local", daemon=True)
        self._thread.start()

    # ----- the caller's side (any thread)
    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closing:
                raise ProviderError("the local engine is shut down", provider="local", retryable=False)
            self._inbox.append(job)
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """Stop a job at the next step; its sequence's cells are cleared."""
        job.cancelled = True
        with self._cv:
            self._cv.notify()

    def stats(self) -> dict[str, int]:
        """Running and queued requests, sequences and KV cells in use (approximate: read live)."""
        return {
            "parallel": self.config.parallel,
            "running": self.sched.running,
            "queued": len(self.sched.queue) + len(self._inbox),
            "n_ctx": self.n_ctx,
        }

    def cells_in_use(self) -> int:
        """KV cells holding a position, summed over sequences (cached prefixes count too)."""
        with self._cv:  # the engine thread holds the lock except while it decodes
            while self._decoding:
                self._cv.wait()
            return self.ctx.cells_in_use()

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.ctx.close()

    # ----- the engine thread
    def _run(self) -> None:
        sched = self.sched
        while True:
            with self._cv:
                while not (self._inbox or self._closing or sched.queue or sched.running):
                    self._cv.wait()
                if self._closing:
                    break
                sched.queue.extend(self._inbox)
                self._inbox.clear()
                try:
                    self._step()
                except BaseException as exc:  # never let the thread die silently
                    self._fail_all(exc)
                finally:
                    self._flush()
        self._fail_all(ProviderError("the local engine shut down", provider="local", retryable=False))
        self._flush()

    def _step(self) -> None:
        sched = self.sched
        sched.drop_cancelled()
        for job in sched.assign():
            if job.position:
                self._post(job, StatusDelta("running"))
            self._post(job, STARTED)
        for i, job in enumerate(sched.queue, 1):
            if job.position != i:
                job.position = i
                self._post(job, StatusDelta("queued", i))
        entries, rows = sched.plan()
        if not entries:
            return
        self._decoding = True
        self._cv.release()  # decode without the lock: submit() and cancel() stay responsive
        try:
            status = self.ctx.decode(entries)
        finally:
            self._cv.acquire()
            self._decoding = False
            self._cv.notify_all()
        if status != 0:
            for slot, _, _ in rows:
                self.ctx.clear(slot.seq)
                slot.cached = []
                self._end(slot, ProviderError(f"llama_decode failed with status {status}", provider="local"))
            return
        sched.commit(rows)
        for slot, _, row in rows:
            owner = slot.job
            if row < 0 or owner is None or owner.cancelled or owner.sampler is None:
                continue
            try:
                token = owner.sampler.sample(self.ctx.ptr, row)
            except Exception as exc:  # this request's samplers failed: it alone ends
                self.ctx.clear(slot.seq)
                slot.cached = []
                self._end(slot, ProviderError(f"local sampling failed: {exc}", provider="local", retryable=False))
                continue
            self._emit(slot, owner, token)

    def _emit(self, slot: Slot, job: Job, token: int) -> None:
        model = self.model
        if model.is_eog(token):
            self._end(slot, "stop")
            return
        job.n_out += 1
        text = job.tail.feed(model.piece(token))
        if text:
            self._post(job, text)
        if job.tail.stopped:
            self._end(slot, "stop")
        elif job.n_out >= job.max_tokens or len(slot.cached) >= self.n_ctx:
            self._end(slot, "length")
        else:
            slot.next_token = token

    def _end(self, slot: Slot, outcome: str | BaseException) -> None:
        job = slot.job
        assert job is not None
        if isinstance(outcome, BaseException):
            self._post(job, outcome)
        else:
            rest = job.tail.flush()
            if rest:
                self._post(job, rest)
            self._post(job, UsageDelta(len(job.tokens), job.n_out, cached_tokens=job.cached))
            self._post(job, FinishDelta(outcome))
        self._post(job, DONE)
        self.sched.vacate(slot)

    def _fail_all(self, exc: BaseException) -> None:
        sched = self.sched
        err = exc
        if not isinstance(exc, ProviderError):
            err = ProviderError(f"local generation failed: {exc}", provider="local")
        for slot in sched.slots:
            if slot.job is not None:
                self.ctx.clear(slot.seq)
                slot.cached = []
                self._end(slot, err)
        for waiting in [*sched.queue, *self._inbox]:
            self._post(waiting, err)
            self._post(waiting, DONE)
            waiting.release()
        sched.queue.clear()
        self._inbox.clear()

    def _post(self, job: Job, item: Any) -> None:
        self._out.setdefault(getattr(job.post, "loop", None), []).append((job, item))

    def _flush(self) -> None:
        out, self._out = self._out, {}
        for loop, items in out.items():
            if loop is None:
                _deliver(items)
                continue
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that loop is closed: its requests were abandoned
                for job, _ in items:
                    job.cancelled = True


def _deliver(items: list[tuple[Job, Any]]) -> None:
    for job, item in items:
        job.post(item)


class _Sink:
    """Puts output items on one request's asyncio queue (called on that queue's loop)."""

    __slots__ = ("loop", "put")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self.loop = loop
        self.put = queue.put_nowait

    def __call__(self, item: Any) -> None:
        self.put(item)


def sink_for(queue: asyncio.Queue[Any]) -> Callable[[Any], None]:
    """A job's `post` for a queue read on the running loop."""
    return _Sink(asyncio.get_running_loop(), queue)


_engines: dict[EngineConfig, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(config: EngineConfig) -> Engine:
    """The engine of `config`, started once per process."""
    with _engines_lock:
        engine = _engines.get(config)
        if engine is None:
            engine = _engines[config] = Engine(config)
        return engine


def running_engine(config: EngineConfig) -> Engine | None:
    """The engine of `config` if it was started (a health check never loads a model)."""
    with _engines_lock:
        return _engines.get(config)


@atexit.register
def _shutdown() -> None:
    """Stop every engine thread (at its next step) and free llama.cpp before teardown."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.shutdown()
    free_models()
