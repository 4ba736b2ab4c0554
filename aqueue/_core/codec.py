"""JSON encoding of task arguments and results (orjson only, never pickle)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from aqueue._core.errors import SerializationError

__all__ = ["decode", "encode"]

# Strict: values that would not come back as the same type (datetimes, dataclasses, str/int subclasses) are
# rejected rather than silently turned into strings or dicts.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
_SCALARS = frozenset({str, int, bool, type(None)})


def _refuse(value: Any) -> str | None:
    """Why orjson would write ``value`` without complaint yet not give it back (``None`` if it would).

    orjson turns NaN and the infinities into ``null``, and enums, UUIDs and numpy values into their values; a task
    would receive something else than it was given. Tuples are accepted and arrive as lists.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not math.isfinite(item):
                return f"{item!r} has no JSON form"
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.values())
            stack.extend(item.keys())
        else:
            return f"Type is not JSON serializable: {kind.__qualname__}"
    return None


def encode(value: Any, what: str = "value") -> str:
    """Encode ``value`` as a JSON string, or raise :class:`SerializationError` naming ``what``."""
    try:
        text = orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from None
    reason = _refuse(value)
    if reason is not None:
        raise SerializationError(f"{what} is not JSON-serializable: {reason}")
    return text


def decode(text: str | bytes) -> Any:
    """Decode a JSON string produced by :func:`encode`."""
    return orjson.loads(text)
