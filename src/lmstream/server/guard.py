"""What a request must pass before it reaches the model: key, body size, concurrency.

Errors are JSON `{"error": {"message", "type"}}`. The key is compared in constant time and is
never echoed, logged or put in an error.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .._json import JSONDecodeError, loads
from .requests import BadRequest

__all__ = ["AuthMiddleware", "Guard", "error_response", "read_json"]

# Routes a browser or a load balancer reaches without the key: the page holds no secret (it asks
# for the key when the API answers 401) and health checks carry no credentials.
OPEN_PATHS = frozenset({"/", "/healthz"})
OPEN_PREFIX = "/static/"  # the page's own script and styles: no secret either


def error_response(status: int, message: str, type_: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_}}, status_code=status, headers=headers)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; 413 past `limit` bytes (checked as it arrives, not after)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest("body", f"larger than {limit} bytes", 413)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest("body", f"larger than {limit} bytes", 413)
        parts.append(chunk)
    raw = b"".join(parts)
    if not raw:
        raise BadRequest("body", "empty; send a JSON object")
    try:
        return loads(raw)
    except (JSONDecodeError, ValueError) as exc:
        raise BadRequest("body", f"malformed JSON ({exc})") from None


class Guard:
    """The server's limits, and the count of streams running now."""

    def __init__(self, api_key: str | None, max_body_bytes: int, max_concurrent: int, max_messages: int) -> None:
        if api_key is not None and not api_key:
            raise ValueError("api_key must not be empty (pass None for no key)")
        if max_body_bytes < 1 or max_concurrent < 1 or max_messages < 1:
            raise ValueError("max_body_bytes, max_concurrent and max_messages must be at least 1")
        self._expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.max_messages = max_messages
        self.active = 0

    def __repr__(self) -> str:  # never show the key
        return f"Guard(api_key={'set' if self._expected else None}, max_concurrent={self.max_concurrent})"

    def authorized(self, header: str | None) -> bool:
        if self._expected is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), self._expected)

    def acquire(self) -> bool:
        if self.active >= self.max_concurrent:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def busy(self) -> JSONResponse:
        return error_response(
            429,
            f"too many streams running (max_concurrent={self.max_concurrent}); retry shortly",
            "rate_limit_error",
            {"retry-after": "1"},
        )


class AuthMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which would sit between a stream and its client)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIX)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        header = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                header = v.decode("latin-1")
                break
        if self.guard.authorized(header):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            "authentication_error",
            {"www-authenticate": "Bearer"},
        )
        await response(scope, receive, send)
