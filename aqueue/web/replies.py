"""JSON replies and JSON errors: every answer of the REST API, success or failure, is built here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

__all__ = ["error", "reply", "too_large"]


def _json(data: Any) -> str:
    return orjson.dumps(data).decode()


def reply(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response (orjson: fast, and it refuses NaN rather than writing invalid JSON)."""
    return web.Response(text=_json(data), status=status, content_type="application/json", headers=headers)


def error(kind: type[web.HTTPException], message: str, headers: Mapping[str, str] | None = None) -> web.HTTPException:
    """An HTTP error of ``kind`` whose body is ``{"error": message}``; raise it from a handler."""
    return kind(text=_json({"error": message}), content_type="application/json", headers=headers)


def too_large(limit: int, size: int) -> web.HTTPException:
    """413 for a request body over ``limit`` bytes (its class takes the sizes, unlike the others)."""
    message = f"request body is larger than the limit of {limit} bytes"
    return web.HTTPRequestEntityTooLarge(limit, size, text=_json({"error": message}), content_type="application/json")
