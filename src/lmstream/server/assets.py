"""The chat page's files (`GET /static/...`), served from the package itself.

The page's script, styles and the vendored markdown library ship in `lmstream/server/static/`
(nothing comes from a CDN), so the page works offline and under a `script-src 'self'` policy.
Only known file types below that folder are served; anything else is a 404.
"""

from __future__ import annotations

import re
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from .guard import error_response

__all__ = ["static_file"]

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_NAME = re.compile(r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # no "..", no leading dot


def _static() -> resources.abc.Traversable:
    return resources.files("lmstream.server").joinpath("static")


async def static_file(request: Request) -> Response:
    name = request.path_params["path"]
    kind = _TYPES.get(name[name.rfind(".") :]) if "." in name else None
    target = _static().joinpath(*name.split("/")) if kind and _NAME.match(name) else None
    if target is None or not target.is_file():
        return error_response(404, f"no file {request.url.path}", "not_found_error")
    return Response(
        target.read_bytes(),
        media_type=kind,
        headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
    )
