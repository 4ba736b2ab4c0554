"""JSON encoding of task arguments and results (orjson only, never pickle)."""

from __future__ import annotations

from typing import Any

import orjson

from aqueue.errors import SerializationError

__all__ = ["decode", "encode"]

# Strict: values that would not come back as the same type (datetimes, dataclasses, str/int subclasses) are
# rejected rather than silently turned into strings or dicts.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


def encode(value: Any, what: str = "value") -> str:
    """Encode ``value`` as a JSON string, or raise :class:`SerializationError` naming ``what``."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError as exc:
        raise SerializationError(f"{what} is not JSON-serializable: {exc}") from None


def decode(text: str | bytes) -> Any:
    """Decode a JSON string produced by :func:`encode`."""
    return orjson.loads(text)
