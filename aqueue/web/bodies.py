"""Reading and checking request input: JSON bodies (size, media type, syntax) and typed fields and query values.

The split of statuses: 413 for a body over the limit, 415 for a body that is not declared JSON, 400 for a body
that is not a JSON object at all, 422 for a well-formed request whose values are wrong (unknown field, wrong type,
out of range). Checks are strict: a misspelt field is an error, not silently ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import hdrs, web

from aqueue._core.options import MAX_SECONDS as _JOB_MAX_SECONDS
from aqueue.web.replies import error, too_large

__all__ = [
    "MAX_SECONDS",
    "int_field",
    "invalid",
    "number_field",
    "query_int",
    "read_object",
    "reject_unknown",
    "str_field",
]

#: The longest duration any option may ask for: the same bound as :class:`aqueue.JobOptions`.
MAX_SECONDS = float(_JOB_MAX_SECONDS)

_CHUNK = 64 * 1024
#: The media types a page may POST to another site without a CORS preflight.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def invalid(message: str) -> web.HTTPException:
    """A 422 error: the request is well-formed but a value in it is not acceptable."""
    return error(web.HTTPUnprocessableEntity, message)


async def read_object(request: web.Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, read up to ``limit`` bytes; ``optional``: an empty body is ``{}``."""
    size = request.content_length
    if size is not None and size > limit:
        raise too_large(limit, size)
    chunks: list[bytes] = []
    total = 0
    # Read by hand rather than request.read(): as a mounted sub-app, the limit aiohttp applies is the parent's.
    async for chunk in request.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise too_large(limit, total)
        chunks.append(chunk)
    raw = b"".join(chunks)
    # A body must be declared JSON: browsers cannot send that cross-site without a CORS preflight, which this app
    # never answers. An empty body is refused too when declared as one of the types a page on another site can
    # post without a preflight (a form), on top of the same-origin check in app.py; a bodiless request with no
    # type (curl -X POST) or a non-form one (aiohttp's application/octet-stream) is fine.
    as_form = hdrs.CONTENT_TYPE in request.headers and request.content_type in _FORM_TYPES
    if (raw.strip() or as_form) and request.content_type != "application/json":
        raise error(web.HTTPUnsupportedMediaType, f"Content-Type must be application/json, not {request.content_type}")
    if not raw.strip():
        if optional:
            return {}
        raise error(web.HTTPBadRequest, "request body must be a JSON object")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error(web.HTTPBadRequest, f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(web.HTTPBadRequest, f"request body must be a JSON object, not {_kind(value)}")
    return value


def reject_unknown(obj: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    """422 if ``obj`` has a field not in ``allowed``."""
    known = set(allowed)
    extra = sorted(set(obj) - known)
    if extra:
        raise invalid(f"unknown field(s) in {where}: {', '.join(extra)}; allowed: {', '.join(sorted(known))}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def str_field(obj: dict[str, Any], name: str, where: str, *, max_length: int = 200) -> str | None:
    """A string field (None when absent or null); 422 if it is not a non-empty string of at most ``max_length``."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise invalid(f"{where}.{name} must be a non-empty string of at most {max_length} characters")
    return value


def int_field(obj: dict[str, Any], name: str, where: str, *, minimum: int, maximum: int) -> int | None:
    """An integer field in ``[minimum, maximum]`` (None when absent or null); 422 otherwise."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise invalid(f"{where}.{name} must be an integer from {minimum} to {maximum}, got {_kind(value)}: {value!r}")
    return value


def number_field(
    obj: dict[str, Any], name: str, where: str, *, minimum: float, maximum: float, exclusive: bool = False
) -> float | None:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` if ``exclusive``); None when absent."""
    value = obj.get(name)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > minimum if exclusive else value >= minimum) or value > maximum:
        low = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        raise invalid(f"{where}.{name} must be a number {low} and at most {maximum:g}, got {value!r}")
    return float(value)


def query_int(request: web.Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    """An integer query parameter in ``[minimum, maximum]``; 422 if it is not one."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise invalid(f"query parameter {name} must be an integer from {minimum} to {maximum}, got {text!r}")
    return value
