"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lmstream import build_lm_invoker
from lmstream.invokers.base import BaseLMInvoker

if TYPE_CHECKING:
    from .redis_server import RedisServer

# Short, deterministic generations keep the suite fast on 2 cores.
SHORT = {"max_tokens": 24, "temperature": 0.0}


@pytest.fixture(scope="session")
def local_invoker() -> BaseLMInvoker:
    inv = build_lm_invoker("local/smollm2-135m")
    inv.load()  # type: ignore[attr-defined]
    return inv


@pytest.fixture(scope="session")
def llama_server_url():
    """Base URL of a real llama.cpp OpenAI-compatible server serving the embedded model."""
    from .llama_server import llama_server

    with llama_server() as url:
        yield url


JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def ai_js_dir() -> Path:
    """tests/js with the pinned `ai` package installed (`npm ci`; see tests/system_deps.py)."""
    from .system_deps import ensure_npm

    ensure_npm(JS_DIR, marker="ai")
    return JS_DIR


@pytest.fixture(scope="session")
def mcp_sdk() -> None:
    """The official `mcp` SDK (extra lmstream[mcp]): its servers back the MCP tests."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        from .system_deps import missing

        missing("the mcp package (in the dev extra): pip install -e '.[dev]'")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium (installed with apt-get when missing; Playwright never downloads one)."""
    from .system_deps import ensure_apt

    return ensure_apt("chromium")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (installed with apt-get when missing), per test module."""
    from .redis_server import RedisServer

    with RedisServer() as srv:
        yield srv


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[Any]:
    """An asyncio client on an empty database with fresh command statistics."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url, socket_connect_timeout=2, socket_timeout=10)
    await client.flushdb()
    await client.config_resetstat()
    yield client
    await client.aclose()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (the page tests share it per module)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from .system_deps import missing

        missing("the playwright Python package (in the dev extra): pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; the page must fetch nothing but the server it came from."""
    context = browser.new_context(viewport={"width": 900, "height": 760}, device_scale_factor=1)
    pg = context.new_page()
    outside: list[str] = []
    # blob: URLs of the page's own origin are its files in memory (thumbnails), not fetches
    local = ("http://127.0.0.1", "data:", "blob:http://127.0.0.1")
    pg.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    yield pg
    context.close()
    assert outside == [], f"the page fetched from outside: {outside}"


@pytest.fixture
def tel() -> Iterator[Any]:
    """An in-memory tracer and meter provider for one test (tests/otel_support.py)."""
    from .otel_support import telemetry

    with telemetry() as t:
        yield t
