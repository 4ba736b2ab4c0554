"""The query string of ``GET /ws``: event filters, and where the feed starts (``since`` or ``recent``)."""

from __future__ import annotations

from dataclasses import dataclass

from multidict import MultiMapping

from aqueue.web.fanout import KNOWN_EVENT_TYPES, EventFilter, EventId, parse_event_id

__all__ = ["MAX_RECENT", "MAX_TEXT", "WsQuery", "parse_query"]

PARAMETERS = ("types", "job", "task", "since", "recent", "queue", "token")
#: Most events ``?recent=`` may ask for.
MAX_RECENT = 1000
#: Longest job id or task name a filter (or a client request) may give.
MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class WsQuery:
    """What a connection asked for in its query string."""

    filter: EventFilter
    since: EventId | None
    recent: int = 0  #: newest events to send first when not resuming
    queue: str | None = None  #: the one queue wanted (an app serving several); None: the app's own, or all


def _single(query: MultiMapping[str], key: str) -> str | None:
    values = query.getall(key, [])
    if len(values) > 1:
        raise ValueError(f"{key}= is given {len(values)} times; give it once")
    if not values:
        return None
    if not values[0] or len(values[0]) > MAX_TEXT:
        raise ValueError(f"{key}= must be 1 to {MAX_TEXT} characters")
    return values[0]


def parse_query(query: MultiMapping[str]) -> WsQuery:
    """Parse ``types``, ``job``, ``task``, ``since``, ``recent`` and ``queue``; a ``ValueError`` says what is wrong.

    ``token`` is allowed (the auth reads it); any other name is refused, so a misspelt filter is not ignored.
    """
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r}; expected any of {', '.join(PARAMETERS)}")
    types: frozenset[str] | None = None
    if "types" in query:
        names = {name.strip() for value in query.getall("types") for name in value.split(",")} - {""}
        if not names:
            raise ValueError("types= must name at least one event type")
        bad = sorted(names - KNOWN_EVENT_TYPES)
        if bad:
            raise ValueError(f"unknown event type {bad[0]!r}; known types: {', '.join(sorted(KNOWN_EVENT_TYPES))}")
        types = frozenset(names)
    since = _single(query, "since")
    recent = _single(query, "recent")
    if recent is not None and (not recent.isdigit() or not 0 < int(recent) <= MAX_RECENT):
        raise ValueError(f"recent= must be a whole number from 1 to {MAX_RECENT}, got {recent!r}")
    if recent is not None and since is not None:
        raise ValueError("give since= (resume after an event) or recent= (start with the newest events), not both")
    event_filter = EventFilter(types, _single(query, "job"), _single(query, "task"))
    since_id = parse_event_id(since) if since is not None else None
    return WsQuery(event_filter, since_id, int(recent or 0), _single(query, "queue"))
