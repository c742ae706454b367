"""Reading a request body: bounded in size, time and nesting, before anything parses it further.

The nesting bound exists because a body is serialised again later (a queued job, an event's
value): orjson reads 1,024 levels but writes only 254, so a deeper body would fail after the
server had accepted it. It is checked right after parsing, where the client can still be told.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from .._json import JSONDecodeError, loads
from ..protocols.errors import BadRequest

__all__ = ["MAX_DEPTH", "read_json"]

#: deepest nesting of arrays and objects a body may have (UI messages need about 6)
MAX_DEPTH = 64


async def read_json(request: Request, limit: int, timeout: float | None = None) -> Any:
    """The body as JSON: 413 past `limit` bytes (checked as it arrives, not after), 408 when it
    does not arrive within `timeout` seconds, 400 when it is not JSON or nests too deep."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest("body", f"larger than {limit} bytes", 413)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest("body", f"larger than {limit} bytes", 413)
                parts.append(chunk)
    except TimeoutError:
        raise BadRequest("body", f"not received within {timeout:g} s", 408) from None
    raw = b"".join(parts)
    if not raw:
        raise BadRequest("body", "empty; send a JSON object")
    try:
        value = loads(raw)
    except (JSONDecodeError, ValueError) as exc:
        raise BadRequest("body", f"malformed JSON ({exc})") from None
    if _depth_over(value, MAX_DEPTH):
        raise BadRequest("body", f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` deep (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if d > limit:
            return True
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return False
