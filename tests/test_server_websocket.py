"""A WebSocket route added to the app is checked like every HTTP route: the key, the Host and the
Origin apply to its handshake (a browser opens a WebSocket cross-site without any preflight), and
only lifespan passes the middlewares unchecked."""

from __future__ import annotations

import socket

import pytest
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from lmstream import LMRequestProcessor, PromptBuilder
from lmstream.testing import ScriptedLMInvoker
from tests.serve_helpers import ServedApp

KEY = "sk-ws-test-key-0123456789"


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("echo:" + await ws.receive_text())
    await ws.close()


@pytest.fixture
def served():
    processor = LMRequestProcessor(PromptBuilder(user_template="{q}"), ScriptedLMInvoker(["hi"]))
    app = ServedApp(processor, api_key=KEY)
    app.app.router.routes.append(WebSocketRoute("/ws", _echo))
    with app:
        yield app


def _ws_url(app: ServedApp) -> str:
    return f"ws://127.0.0.1:{app.port}/ws"


def _refused(app: ServedApp, host: str = "127.0.0.1", **kwargs: object) -> int:
    """The HTTP status the handshake was refused with (fails if it was accepted). `host` is the
    name the client believes it reached (the Host header); the socket goes to loopback."""
    sock = socket.create_connection(("127.0.0.1", app.port), timeout=5)
    url = f"ws://{host}:{app.port}/ws"
    with pytest.raises(InvalidStatus) as info, connect(url, sock=sock, open_timeout=5, **kwargs) as ws:  # type: ignore[arg-type]
        ws.send("x")
        pytest.fail(f"the handshake was accepted and echoed {ws.recv(timeout=5)!r}")
    return info.value.response.status_code


def test_with_the_key_the_host_and_no_foreign_origin_the_websocket_opens(served):
    headers = {"Authorization": f"Bearer {KEY}"}
    with connect(_ws_url(served), additional_headers=headers, open_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "echo:hello"
    own = f"http://127.0.0.1:{served.port}"  # the server's own page may open it
    with connect(_ws_url(served), additional_headers=headers, origin=own, open_timeout=5) as ws:  # type: ignore[arg-type]
        ws.send("again")
        assert ws.recv(timeout=5) == "echo:again"


def test_a_websocket_handshake_without_the_key_is_refused(served):
    assert _refused(served) == 401
    assert _refused(served, additional_headers={"Authorization": "Bearer wrong-key"}) == 401


def test_a_websocket_handshake_under_a_foreign_host_is_refused(served):
    """DNS rebinding: a page on evil.test resolving to 127.0.0.1 reaches the server with its Host."""
    headers = {"Authorization": f"Bearer {KEY}"}
    assert _refused(served, host="evil.test", additional_headers=headers) == 421


def test_a_websocket_handshake_from_a_foreign_origin_is_refused(served):
    headers = {"Authorization": f"Bearer {KEY}"}
    assert _refused(served, additional_headers=headers, origin="http://evil.test") == 403


async def test_without_the_http_response_extension_a_refused_handshake_is_closed_before_accept():
    """A server that cannot send an HTTP response to a handshake gets a close (it answers 403);
    the app behind never sees the connection. Lifespan alone passes unchecked."""
    from lmstream.server.checks import RequestChecks
    from lmstream.server.guard import AuthMiddleware, Guard

    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["type"])

    async def receive():
        return {"type": "websocket.connect"}

    for middleware in (RequestChecks(app, [], []), AuthMiddleware(app, Guard(KEY, 1000, 4, 100))):
        sent: list[dict] = []

        async def send(message, sent=sent):
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "scheme": "ws", "headers": [(b"host", b"evil.test")]}
        await middleware(scope, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008}]
        await middleware({"type": "lifespan"}, receive, send)
    assert reached == ["lifespan", "lifespan"]
