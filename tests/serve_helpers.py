"""Run lmstream's app under real uvicorn on loopback, in a thread, for the server tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import uvicorn

from lmstream import LMRequestProcessor, build_lm_request_processor
from lmstream.server import create_app
from tests.wire.server import WireServer

__all__ = ["ServedApp", "parse_ui_stream", "wire_processor"]


def wire_processor(srv: WireServer, **kw: Any) -> LMRequestProcessor:
    """A processor on `openai-compatible/` pointed at a wire replay server."""
    return build_lm_request_processor(
        "openai-compatible/wire-model", credentials="sk-wire-test", config={"base_url": f"{srv.base_url}/v1"}, **kw
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedApp:
    """`with ServedApp(processor, **create_app_kwargs) as app:` -> `app.url`. The processor's
    invoker is closed on the server's own loop when it stops (its connections live there)."""

    def __init__(self, processor: LMRequestProcessor, **kwargs: Any) -> None:
        self.processor = processor
        self.app = create_app(processor, **kwargs)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> Any:
        return self.app.state.lmstream

    def __enter__(self) -> ServedApp:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            try:
                await self.server.serve()
            finally:
                await self.processor.lm_invoker.aclose()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive(), "uvicorn did not stop"

    def idle(self, timeout: float = 2.0) -> bool:
        """True once no request runs and no stream slot is held (bounded wait)."""
        deadline = time.monotonic() + timeout
        while self.state.running or self.state.guard.active:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def wait(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of an SSE line stream (one per event)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def parse_ui_stream(resp: httpx.Response) -> list[dict[str, Any]]:
    import json

    chunks = []
    for payload in sse_data(resp.iter_lines()):
        if payload == "[DONE]":
            chunks.append({"type": "[DONE]"})
        else:
            chunks.append(json.loads(payload))
    return chunks
