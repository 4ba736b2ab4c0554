"""How the CLI prints: JSON documents, times and spans, one-line cuts, aligned tables, counted nouns."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["describe_pause", "one_line", "plural", "print_json", "span", "table", "when"]


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def when(ts: float | None) -> str:
    """``2024-05-01 12:00:00 UTC`` for Unix seconds; ``an unknown time`` for None."""
    if ts is None:
        return "an unknown time"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """``45s``, ``1.5m``, ``2h``, ``7d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or unit == "s":
            return f"{seconds / size:.1f}".rstrip("0").rstrip(".") + unit
    raise AssertionError("unreachable")


def describe_pause(paused: dict[str, Any]) -> str:
    """``since 2024-05-01 12:00:00 UTC (5m ago) by NAME`` for a :meth:`Tasks.paused` record."""
    at = paused.get("at")
    at = float(at) if isinstance(at, int | float) and math.isfinite(at) else None
    age = "" if at is None else f" ({span(time.time() - at)} ago)"
    return f"since {when(at)}{age} by {paused.get('by') or 'unknown'}"


def one_line(text: str, width: int) -> str:
    """``text`` with its whitespace runs (newlines too) made single spaces, cut to ``width`` characters with …."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` (the first one is the header) as left-aligned columns, indented by two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 job``, ``2 jobs``; ``many`` for an irregular plural."""
    return f"{n} {one if n == 1 else many or one + 's'}"
