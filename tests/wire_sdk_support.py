"""The official SDKs' clients pointed at a WireServer, and a tiny SSE parser for fixtures."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types as genai_types

from tests.wire.server import WireServer

KEY = "sk-wire-dummy"


def _openai(srv: WireServer, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{srv.base_url}/v1", api_key=KEY, max_retries=0, timeout=5.0, **kw)


def _anthropic(srv: WireServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=5.0)


def _genai(srv: WireServer) -> genai.Client:
    # google-genai 3.x defaults to /v1/; the public Gemini API docs use /v1beta/.
    opts = genai_types.HttpOptions(base_url=srv.base_url, api_version="v1beta", timeout=5000)
    return genai.Client(api_key=KEY, http_options=opts)


def _events(chunks: list[bytes]) -> list[tuple[str | None, Any]]:
    """Tiny SSE parser for structural assertions on fixtures themselves."""
    out: list[tuple[str | None, Any]] = []
    for block in b"".join(chunks).decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        payload = "\n".join(data)
        out.append((event, payload if payload == "[DONE]" else json.loads(payload)))
    return out
