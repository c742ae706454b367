"""A batch's input: one request per JSONL line (or CSV row), checked before anything is sent.

A line is `{"id": ..., "prompt": "..."}`, or `{"id": ..., "prompt_kwargs": {...}}`, with optional
`history` (a list of `{"role", "content"}`), `files` (paths relative to the input file's folder,
or `data:`/`http(s):` URLs: attached to the user message, each read and type-checked before
anything is sent), `hyperparameters` and `metadata` (copied to the output line).
A CSV needs a `prompt` column; an `id` column is optional, other columns go to `metadata`.
Without an id, a request is known by its line number. Every bad line is reported in one error,
with its line number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _json
from ..errors import AttachmentError, ConfigurationError
from ..types import Attachment

__all__ = ["BatchRequest", "coerce_requests", "read_requests"]

_KEYS = ("id", "prompt", "prompt_kwargs", "history", "files", "hyperparameters", "metadata")
#: at most this many bad lines are listed in the error
_MAX_LISTED = 10


@dataclass(slots=True)
class BatchRequest:
    """One request of a batch; `id` names it in the output (and for resuming)."""

    id: str
    prompt: str | None = None
    prompt_kwargs: dict[str, Any] | None = None
    history: list[Any] | None = None
    hyperparameters: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    #: attached to the user message (`extra_contents`)
    files: list[Attachment] | None = None

    @classmethod
    def from_obj(cls, obj: Any, default_id: str, base: Path | None = None) -> BatchRequest:
        """From a string (the prompt) or a mapping with the keys above; ValueError says what is wrong."""
        if isinstance(obj, BatchRequest):
            return obj
        if isinstance(obj, str):
            return cls(default_id, prompt=obj)
        if not isinstance(obj, Mapping):
            raise ValueError(f"expected a JSON object or a string, got {type(obj).__name__}")
        unknown = sorted(set(obj) - set(_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; accepted: {', '.join(_KEYS)}")
        rid = obj.get("id", default_id)
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise ValueError(f"id must be a non-empty string or an integer, got {rid!r}")
        prompt, kwargs = obj.get("prompt"), obj.get("prompt_kwargs")
        if (prompt is None) == (kwargs is None):
            raise ValueError("give exactly one of prompt (a string) or prompt_kwargs (an object)")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        for key, kind in (("prompt_kwargs", dict), ("history", list), ("hyperparameters", dict), ("metadata", dict)):
            v = obj.get(key)
            if v is not None and not isinstance(v, kind):
                raise ValueError(f"{key} must be a JSON {'object' if kind is dict else 'list'}")
        try:  # what is read must be writable back: orjson reads 1,024 levels deep but writes 254
            _json.dumpb({k: v for k, v in obj.items() if k != "files"})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot be written back as JSON (nested too deeply?): {exc}") from None
        files = _files(obj.get("files"), base)
        return cls(
            str(rid), prompt, kwargs, obj.get("history"), obj.get("hyperparameters"), obj.get("metadata"), files
        )


def _files(raw: Any, base: Path | None) -> list[Attachment] | None:
    """A line's `files`: each a path (relative to `base`), a URL, or an `Attachment`."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ValueError("files must be a JSON list of paths or URLs")
    out: list[Attachment] = []
    for i, f in enumerate(raw):
        try:
            if isinstance(f, Attachment):
                out.append(f)
            elif not isinstance(f, str) or not f:
                raise ValueError(f"must be a path or a URL, got {f!r}")
            elif f.split(":", 1)[0] in ("data", "http", "https", "gs"):
                out.append(Attachment.from_url(f))
            else:
                path = Path(f).expanduser()
                out.append(Attachment.from_path(path if path.is_absolute() or base is None else base / path))
        except (OSError, AttachmentError) as exc:
            raise ValueError(f"files[{i}]: {exc}") from exc
    return out


def coerce_requests(items: Iterable[Any]) -> list[BatchRequest]:
    """Library input (strings, dicts, `BatchRequest`s) checked as a whole; ids default to the index."""
    return _checked((i, obj) for i, obj in enumerate(items))


def read_requests(path: str | Path) -> list[BatchRequest]:
    """Read a `.jsonl` (or `.json` lines) or `.csv` file; `-` reads JSONL from standard input."""
    if str(path) == "-":
        import sys

        return _checked(_jsonl(sys.stdin))
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(f"input file not found: {p}")
    with p.open(encoding="utf-8", newline="") as f:
        if p.suffix.lower() == ".csv":
            return _checked(_csv(f, p))
        return _checked(_jsonl(f), p.parent)


def _jsonl(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, _json.loads(line)
        except ValueError as exc:
            yield n, _Bad(f"not valid JSON ({exc})")


def _csv(f: io.TextIOBase, p: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(f)
    cols = reader.fieldnames or []
    if "prompt" not in cols:
        raise ConfigurationError(f"{p}: a CSV batch needs a 'prompt' column (columns: {', '.join(cols) or 'none'})")
    for n, row in enumerate(reader, 2):
        meta = {k: v for k, v in row.items() if k not in ("id", "prompt") and k is not None}
        obj: dict[str, Any] = {"prompt": row.get("prompt") or ""}
        if row.get("id"):
            obj["id"] = row["id"]
        if meta:
            obj["metadata"] = meta
        yield n, obj


class _Bad:
    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _checked(items: Iterable[tuple[int, Any]], base: Path | None = None) -> list[BatchRequest]:
    out: list[BatchRequest] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, obj in items:
        try:
            if isinstance(obj, _Bad):
                raise ValueError(obj.why)
            req = BatchRequest.from_obj(obj, str(n), base)
            if req.id in seen:
                raise ValueError(f"id {req.id!r} repeats line {seen[req.id]} (ids must be unique to resume)")
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        seen[req.id] = n
        out.append(req)
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise ConfigurationError(f"{len(problems)} bad request(s), nothing was sent: {listed}{more}")
    return out
