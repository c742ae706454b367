"""Who may talk to the server at all: the Host it was reached by, the Origin of a browser request,
and the content type of a POST. Checked before the key and before any body is read.

Why each check, for a server on loopback without a key:
- **Host**: a DNS-rebinding page (``http://evil.test:8000`` resolving to 127.0.0.1) reaches the
  server with ``Host: evil.test``; only the names the operator allows are served.
- **Origin**: a page on another site can send a "simple" cross-site request (a hidden form) that
  needs no CORS preflight; a browser names its origin, and only the server's own origin and the
  CORS list may POST.
- **Content type**: a form can send only ``text/plain``, ``multipart/form-data`` or
  ``application/x-www-form-urlencoded``; requiring ``application/json`` on every POST (stop
  included) forces a preflight that a foreign origin fails.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from .guard import deny, error_response

__all__ = ["LOOPBACK_HOSTS", "RequestChecks", "host_allowed"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: the scheme of the page that opens a connection of each scheme (its Origin's)
_PAGE_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
#: paths reached without a browser's involvement (load balancers use an internal Host)
_HOSTLESS_PATHS = frozenset({"/healthz"})


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """`host` (a Host header, port and all) is one of `allowed` ("*" allows any), or a loopback
    name when `allowed` holds the loopback names."""
    if "*" in allowed:
        return True
    name = _strip_port(host).rstrip(".")
    if name in allowed:
        return True
    if "localhost" in allowed and name.endswith(".localhost"):
        return True  # browsers resolve *.localhost to loopback themselves (RFC 6761)
    try:
        return ipaddress.ip_address(name).is_loopback and bool(allowed & LOOPBACK_HOSTS)
    except ValueError:
        return False


class RequestChecks:
    """Pure ASGI middleware: 421 for a Host not allowed, 403 for a foreign Origin, 415 for a POST
    that is not JSON. A WebSocket handshake passes the Host and Origin checks too (a browser
    opens one cross-site without any preflight); only lifespan passes unchecked."""

    def __init__(self, app: Any, allowed_hosts: Iterable[str], cors_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed_hosts = frozenset(_strip_port(h) if h != "*" else h for h in allowed_hosts) or LOOPBACK_HOSTS
        self.cors_origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
            elif k == b"origin":
                origin = v.decode("latin-1")
            elif k == b"content-type":
                content_type = v.decode("latin-1")
        problem = self._problem(scope, host, origin, content_type)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message, type_ = problem
        await deny(error_response(status, message, type_, {"connection": "close"}), scope, receive, send)

    def _problem(
        self, scope: dict[str, Any], host: str | None, origin: str | None, content_type: str | None
    ) -> tuple[int, str, str] | None:
        if scope["path"] not in _HOSTLESS_PATHS and not host_allowed(host or "", self.allowed_hosts):
            return (
                421,
                "this server is not served under that host name; the operator can allow it with --allowed-host",
                "invalid_request_error",
            )
        method = scope.get("method")  # a WebSocket handshake has none
        if origin is not None and method != "OPTIONS" and not self._origin_ok(scope, host, origin):
            return 403, "cross-site requests are not allowed from this origin", "permission_error"
        if method == "POST" and not _is_json(content_type):
            return 415, "content-type: send 'application/json'", "invalid_request_error"
        return None

    def _origin_ok(self, scope: dict[str, Any], host: str | None, origin: str) -> bool:
        o = origin.strip().rstrip("/").lower()
        if o in self.cors_origins or "*" in self.cors_origins:
            return True
        scheme = _PAGE_SCHEMES.get(scope.get("scheme", "http"), "http")  # a page on https opens wss
        return host is not None and o == f"{scheme}://{host.strip().lower()}"


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"
