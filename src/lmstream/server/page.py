"""`GET /`: the chat page, with headers that keep it from being framed, sniffed or injected into.

The Content-Security-Policy allows scripts from this origin and the page's own inline scripts
by hash (computed from the file, so editing the page needs no policy edit); nothing else runs,
nothing is fetched from elsewhere, and no other site may frame the page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

__all__ = ["page", "page_headers"]

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)


@functools.cache
def _html() -> str:
    return resources.files("lmstream.server").joinpath("static/chat.html").read_text("utf-8")


@functools.cache
def page_headers() -> dict[str, str]:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(_html())
    )
    script_src = f"'self' {hashes}".strip()
    csp = (
        "default-src 'self'; "
        f"script-src {script_src}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; "
        "connect-src 'self'; "
        "object-src 'none'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )
    return {
        "cache-control": "no-cache",
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }


async def page(request: Request) -> Response:
    return HTMLResponse(_html(), headers=page_headers())
