"""What a request must pass before it reaches the model: the key and a concurrency slot.

Errors are JSON `{"error": {"message", "type", "param", "code"}}` (OpenAI's shape). The key is
compared in constant time and is never echoed, logged or put in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from ..cache import set_request_context

__all__ = ["AuthMiddleware", "Guard", "Slot", "error_response"]

# Routes a browser or a load balancer reaches without the key: the page holds no secret (it asks
# for the key when the API answers 401) and health checks carry no credentials.
OPEN_PATHS = frozenset({"/", "/healthz"})
OPEN_PREFIX = "/static/"  # the page's own script and styles: no secret either


def error_response(
    status: int,
    message: str,
    type_: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """`{"error": {"message", "type", "param", "code"}}`: OpenAI's shape, which its SDKs (and the
    `ai` client) read, on every route."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def deny(response: JSONResponse, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse a request before the app sees it: an HTTP request gets `response`; a WebSocket
    handshake gets it too where the server can send an HTTP response to one (the ASGI extension
    `websocket.http.response`), else a close before accept, which the server answers with 403."""
    if scope["type"] == "websocket" and "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})  # 1008: policy violation
        return
    await response(scope, receive, send)


class Slot:
    """One of the guard's concurrency slots, held by everything that needs it (the route, its
    response, an answer that outlives the response): back to the guard when the last lets go."""

    __slots__ = ("_guard", "_holders")

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._holders = 1

    def share(self) -> None:
        """One more holder (call `release()` once for each)."""
        if self._holders <= 0:
            raise RuntimeError("this slot was already given back")
        self._holders += 1

    def release(self) -> None:
        if self._holders <= 0:
            return  # given back already: never free someone else's slot
        self._holders -= 1
        if self._holders == 0:
            self._guard.active -= 1


class Guard:
    """The server's limits, and the count of slots (streams and detached answers) held now."""

    def __init__(
        self, api_key: str | Sequence[str] | None, max_body_bytes: int, max_concurrent: int, max_messages: int
    ) -> None:
        keys = [api_key] if isinstance(api_key, str) else list(api_key or ())
        if api_key is not None and (not keys or not all(isinstance(k, str) and k for k in keys)):
            raise ValueError("api_key must not be empty (pass None for no key)")
        if max_body_bytes < 1 or max_concurrent < 1 or max_messages < 1:
            raise ValueError("max_body_bytes, max_concurrent and max_messages must be at least 1")
        # each key is a tenant: its answers are cached for it alone (the cache sees a digest, never the key)
        self._keys = [(k.encode("utf-8"), hashlib.sha256(k.encode("utf-8")).hexdigest()) for k in keys]
        self._expected = self._keys[0][0] if self._keys else None
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.max_messages = max_messages
        self.active = 0

    def __repr__(self) -> str:  # never show the key
        return f"Guard(api_key={'set' if self._expected else None}, max_concurrent={self.max_concurrent})"

    def authorized(self, header: bytes | None) -> bool:
        """`header` is the raw `Authorization` value: scheme `Bearer` in any case, then the key,
        compared as bytes (a UTF-8 key matches the UTF-8 bytes a client sends) in constant time."""
        return self.tenant(header) is not False

    def tenant(self, header: bytes | None) -> str | bool | None:
        """The tenant `header` authenticates (a digest of its key), None when no key is set,
        False when it authenticates nobody. Every key is compared, so the time says nothing."""
        if not self._keys:
            return None
        if header is None:
            return False
        scheme, _, key = header.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        key = key.strip()
        found: str | bool = False
        for expected, digest in self._keys:
            if hmac.compare_digest(key, expected):
                found = digest
        return found

    def acquire(self) -> Slot | None:
        """A slot, or None when `max_concurrent` are held."""
        if self.active >= self.max_concurrent:
            return None
        self.active += 1
        return Slot(self)

    def busy(self) -> JSONResponse:
        return error_response(
            429,
            f"too many streams running (max_concurrent={self.max_concurrent}); retry shortly",
            "rate_limit_error",
            {"retry-after": "1"},
        )


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


class AuthMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware, which would sit between a stream and its client)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":  # what the response cache needs of this request (none of it for others)
            tenant = self.guard.tenant(_header(scope, b"authorization"))
            fresh = b"no-cache" in (_header(scope, b"cache-control") or b"").lower()
            set_request_context(tenant if isinstance(tenant, str) else None, fresh)
        if (  # a WebSocket handshake needs the key like any request: only lifespan passes unchecked
            scope["type"] == "lifespan"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIX)
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(values) > 1:
            response = error_response(400, "send one Authorization header, not several", "invalid_request_error")
            await deny(response, scope, receive, send)
            return
        if self.guard.authorized(values[0] if values else None):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            "authentication_error",
            {"www-authenticate": "Bearer"},
        )
        await deny(response, scope, receive, send)
