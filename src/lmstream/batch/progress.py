"""Batch progress on standard error: a live bar on a terminal (rich), else a plain line every
few seconds (a log, a CI job). Both show done/failed/total, tokens/s, ETA and spend so far."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, TextIO

from .runner import BatchStats

__all__ = ["Progress", "format_eta", "format_spend", "format_usd", "make_progress", "status_line"]


def format_spend(stats: BatchStats) -> str:
    spend = stats.spend
    if spend is None:
        return "spend unknown (no price for this model)"
    partial = f" (+{stats.cost_unknown} unpriced)" if stats.cost_unknown else ""
    return f"{format_usd(spend)}{partial}"


def format_usd(usd: float) -> str:
    """`$12.3400`, `$0.0100`; below a cent six decimals (`$0.000270`), so small spend is not `$0.0000`."""
    return f"${usd:.4f}" if usd >= 0.01 or usd == 0 else f"${usd:.6f}"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


def status_line(stats: BatchStats) -> str:
    """One plain line: `batch: 120/200 done, 3 failed, 8 running, 45.1 tok/s, ETA 00:12, $0.0123`."""
    total = stats.total - stats.skipped
    running = stats.limiter.in_flight if stats.limiter is not None else 0
    return (
        f"batch: {stats.done}/{total} done, {stats.failed} failed, {running} running, "
        f"{stats.tokens_per_s:.1f} tok/s, ETA {format_eta(stats.eta)}, {format_spend(stats)}"
    )


class Progress:
    """The plain form: a line every `every` seconds while running, and one at the end."""

    def __init__(self, stats: BatchStats, out: TextIO, every: float) -> None:
        self.stats = stats
        self.out = out
        self.every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self._line()

    def _line(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.write(status_line(self.stats) + "\n")
            self.out.flush()

    def update(self) -> None:
        """A result arrived (the plain form waits for its next tick)."""

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._line()


class _RichProgress(Progress):
    """The terminal form: rich's live progress bar (refreshed by rich's own thread)."""

    def __init__(self, stats: BatchStats, out: TextIO, console: Any = None) -> None:
        super().__init__(stats, out, 0.0)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[tps]} tok/s"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("[green]{task.fields[spend]}"),
            console=console or Console(file=out),
            refresh_per_second=4,
        )
        self._id = self._bar.add_task("batch", total=stats.total - stats.skipped, **self._fields())

    def _fields(self) -> dict[str, Any]:
        s = self.stats
        return {"failed": s.failed, "tps": f"{s.tokens_per_s:.1f}", "eta": format_eta(s.eta), "spend": format_spend(s)}

    def start(self) -> None:
        self._bar.start()

    def update(self) -> None:
        self._bar.update(self._id, completed=self.stats.finished, **self._fields())

    def stop(self) -> None:
        self.update()
        self._bar.stop()


def make_progress(stats: BatchStats, out: TextIO | None = None, every: float = 5.0, console: Any = None) -> Progress:
    """rich's bar when `out` (standard error by default) is a terminal and rich is installed,
    else plain lines every `every` seconds."""
    out = out or sys.stderr
    tty = console is not None or (hasattr(out, "isatty") and out.isatty())
    if tty:
        try:
            return _RichProgress(stats, out, console)
        except ImportError:
            pass  # no rich: the plain lines still tell the story
    return Progress(stats, out, every)
