"""``GET /``: the dashboard, one static page (HTML, CSS, JS modules shipped in ``aqueue/web/static``) fed by
``/ws``.

The page holds no data: everything it shows arrives over the WebSocket, so it is served without a token (the
WebSocket and the buttons' POSTs carry the one given in the page's ``?token=``). Its Content-Security-Policy
allows only this page's own script, style and connections, so even a rendering mistake could not run a job's
data as code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "setup"]

#: Only this app's own files and connections; no inline script or style, no frames, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: The script is ES modules: ``dashboard.js`` imports those under ``dashboard/`` (see its opening comment).
_MODULES = ("actions", "charts", "live", "state", "tables", "util")
_FILES = {
    "/": ("dashboard.html", "text/html"),
    "/dashboard.js": ("dashboard.js", "text/javascript"),
    **{f"/dashboard/{name}.js": (f"dashboard/{name}.js", "text/javascript") for name in _MODULES},
    "/dashboard.css": ("dashboard.css", "text/css"),
}

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page URL may carry ?token=
    "Cache-Control": "no-cache",  # revalidate, so an upgraded package's page is picked up at once
}


def _read(name: str) -> bytes:
    return resources.files("aqueue.web").joinpath("static", *name.split("/")).read_bytes()


def _handler(body: bytes, content_type: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    return serve


def setup(app: web.Application) -> None:
    """Register ``GET /`` (the page) and its script modules and style sheet on ``app``; the files are read once,
    here."""
    for path, (name, content_type) in _FILES.items():
        route = f"aqueue-{name.replace('.', '-').replace('/', '-')}"
        app.router.add_get(path, _handler(_read(name), content_type), name=route)
