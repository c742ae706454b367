"""A batch's output: one JSON line per request, appended as each finishes, safe to resume.

Each line goes out in one `write()` on a file opened for appending, so a crash can cut only the
last line short; the next run drops such a line (and, with `--retry-failed`, the failed lines
it retries) by rewriting the file atomically (a temporary file, fsync, rename) before it sends
anything. Earlier lines are never touched in place. A file holding anything but result lines
(the input itself, a CSV, someone's notes) is refused untouched: it is not a batch's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _json
from ..errors import ConfigurationError
from ..event_values import UsageValue

__all__ = ["BatchResult", "OutputFile", "Resume"]

#: the output is fsync'ed at most this often (and when closed)
_FSYNC_EVERY_S = 2.0


@dataclass(slots=True)
class BatchResult:
    """One answered (or failed) request. `value` is the parser's value (`--json`), else None."""

    id: str
    text: str | None = None
    value: Any = None
    parsed: bool = False
    usage: UsageValue | None = None
    finish_reason: str | None = None
    duration: float | None = None
    time_to_first_token: float | None = None
    #: {"type", "message", "retryable"}: retryable says whether a re-run may cure it
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    #: USD of this request, None when no price is known
    cost: float | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.parsed:
            d["value"] = self.value
        else:
            d["text"] = self.text
        d["usage"] = self.usage
        d["finish_reason"] = self.finish_reason
        d["duration"] = self.duration
        d["time_to_first_token"] = self.time_to_first_token
        if self.error is not None:
            d["error"] = self.error
        if self.metadata:
            d["metadata"] = self.metadata
        return d


@dataclass(slots=True)
class Resume:
    """What an existing output file already holds."""

    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    #: of `failed`, those whose error a re-run cannot cure (bad input, a refused key, ...)
    unfixable: set[str] = field(default_factory=set)
    #: lines dropped when the file was tidied (a cut-short last line, retried failures)
    dropped: int = 0


class OutputFile:
    """Append-only JSONL output; `open()` reads what a previous run left (see the module doc)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._synced = time.monotonic()

    def open(self, retry_failed: bool = False) -> Resume:
        """Take the file (one run at a time), read the previous run's lines, tidy the file if
        needed, and keep it open for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._locked()
        resume = Resume()
        keep: list[bytes] = []
        rewrite = False
        if self.path.stat().st_size:
            raw = self.path.read_bytes()
            lines = raw.split(b"\n")
            complete, tail = lines[:-1], lines[-1]
            foreign = [n for n, line in enumerate(complete, 1) if line.strip() and not _is_result(_parse(line))]
            if tail.strip() and not tail.lstrip().startswith(_RESULT_START):
                foreign.append(len(lines))
            if foreign:  # not a file a batch run wrote: never rewrite someone's data
                self.close()
                raise ConfigurationError(
                    f"{self.path} is not lmstream batch output (line {foreign[0]} is not a result line); "
                    "nothing was changed: give -o a new file, or an output of an earlier run to resume it"
                )
            if tail.strip():  # no newline at the end: the write was cut short
                rewrite = True
                resume.dropped += 1
            for line in complete:
                if not line.strip():
                    continue
                obj = _parse(line)
                rid = str(obj["id"])
                failed = obj.get("error") is not None
                if rid in resume.done or rid in resume.failed:
                    rewrite = True  # a duplicate: keep the first
                    resume.dropped += 1
                    continue
                if failed and retry_failed:
                    rewrite = True
                    resume.dropped += 1
                    continue
                (resume.failed if failed else resume.done).add(rid)
                if failed and isinstance(obj["error"], dict) and obj["error"].get("retryable") is False:
                    resume.unfixable.add(rid)
                keep.append(line)
        if rewrite:
            self._replace(keep)
            old, self._fd = self._fd, self._locked()  # the tidied file is a new inode: take it too
            os.close(old)
        return resume

    def _locked(self) -> int:
        """The output opened for appending, under an exclusive lock (two runs on one output
        would answer the same ids twice)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigurationError(
                f"{self.path} is being written by another lmstream batch run; wait for it to end, or use another -o"
            ) from None
        return fd

    def _replace(self, lines: list[bytes]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            for line in lines:
                f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def write(self, result: BatchResult) -> None:
        """One line, one write(): never interleaved, at worst cut short at the very end."""
        if self._fd is None:
            raise RuntimeError("OutputFile.open() first")
        data = _json.dumpb(result.to_dict()) + b"\n"
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        now = time.monotonic()
        if now - self._synced >= _FSYNC_EVERY_S:
            self._synced = now
            os.fsync(self._fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)


#: how every line `write` makes begins (`BatchResult.to_dict` puts the id first)
_RESULT_START = b'{"id"'


def _is_result(obj: Any) -> bool:
    """A line a batch run wrote: an id and an answer (text or value) or an error. An input line
    (a prompt, no answer), a CSV row or a note is none."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("id"), str | int)
        and not isinstance(obj.get("id"), bool)
        and ("text" in obj or "value" in obj or "error" in obj)
    )


def _parse(line: bytes) -> Any:
    try:
        return _json.loads(line)
    except ValueError:
        return None
