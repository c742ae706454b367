"""Shared fixtures: the real embedded model, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmstream import build_lm_invoker
from lmstream.invokers.base import BaseLMInvoker

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
def chromium_path() -> str:
    """Debian's chromium (installed with apt-get when missing; Playwright never downloads one)."""
    from .system_deps import ensure_apt

    return ensure_apt("chromium")
