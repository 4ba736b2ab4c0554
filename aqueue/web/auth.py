"""Who may call the web app: the bearer token (``Authorization: Bearer``, or ``?token=`` for the WebSocket) and the
same-origin rule for browsers. :mod:`aqueue.web.app` installs the middlewares; :mod:`aqueue.web.ws` checks the token
itself before the upgrade.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from aqueue.web.replies import error
from aqueue.web.state import CONFIG, WebConfig

__all__ = ["OWN_RESOURCES", "check_token", "require_token", "same_origin"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
#: The data resources :func:`~aqueue.web.app.create_app` registers, so :func:`require_token` knows which reads
#: ``protect_reads`` covers.
OWN_RESOURCES: web.AppKey[frozenset[web.AbstractResource]] = web.AppKey("aqueue_own_resources", frozenset)


def _unauthorized() -> web.HTTPException:
    return error(web.HTTPUnauthorized, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def _same(given: str, token: str) -> bool:
    # Constant time, so the token cannot be guessed by timing; a header that is not text (undecodable bytes) is
    # simply a wrong token, never an error.
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def check_token(request: web.Request, config: WebConfig) -> None:
    """Raise 401 (JSON body) unless the request carries the token: ``Authorization: Bearer`` or ``?token=``.

    Does nothing when no token is configured. For the WebSocket, which browsers cannot give headers to; the REST
    routes take the header only (a token in a URL ends up in access logs).
    """
    if config.token is None:
        return
    given = _bearer(request) or request.query.get("token")
    if given is None or not _same(given, config.token):
        raise _unauthorized()


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token: every mutating request needs it; reads of the app's data routes too when ``protect_reads``.

    Other reads are left open or to their handlers: the health checks, the dashboard page (it carries no queue
    data) and the WebSocket (it checks the token itself with :func:`check_token`, also from ``?token=``).
    """
    config = request.config_dict[CONFIG]
    if config.token is not None:
        if request.method in _SAFE_METHODS:
            needed = config.protect_reads and request.match_info.route.resource in request.config_dict[OWN_RESOURCES]
        else:
            needed = True
        if needed:
            given = _bearer(request)
            if given is None or not _same(given, config.token):
                raise _unauthorized()
    return await handler(request)


def _cross_origin(request: web.Request, allowed: frozenset[str]) -> str | None:
    """Why a browser request comes from another site (None if it does not, or is not from a browser).

    Modern browsers say where a request comes from in ``Sec-Fetch-Site``; older ones send ``Origin`` on every
    cross-origin POST and WebSocket, compared here with the ``Host`` the request was sent to. Clients that are not
    browsers (curl, SDKs, the CLI) send neither and are not concerned: for them the token is the guard.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin in allowed:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site: {site}, Origin: {origin}"
    if origin is None:
        return None
    host = origin.partition("://")[2]
    return None if host and host == request.host else f"Origin {origin} is not this host ({request.host})"


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse mutating requests and WebSocket upgrades a page on another site makes from a visitor's browser.

    Without it, any web page an operator opens could pause the queue, delete finished jobs or read the event
    stream through the operator's browser (a WebSocket is not bound by CORS), token or not.
    """
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    if request.method not in _SAFE_METHODS or upgrade:
        why = _cross_origin(request, request.config_dict[CONFIG].allowed_origins)
        if why is not None:
            raise error(
                web.HTTPForbidden,
                f"cross-origin request refused ({why}); create_app(allowed_origins=[...]) admits an origin",
            )
    return await handler(request)
