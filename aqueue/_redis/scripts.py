"""The Lua scripts, assembled once at import: the prelude, then the script, with the key names substituted.

Stage: every state change of a job (enqueue, claim and start, settle, promote, heartbeat, release, cancel,
progress, requeue, cleanup, cron) is one of these scripts, and each writes its own events. The broker loads them
with SCRIPT LOAD and calls them by SHA (:class:`~aqueue._redis.base.BrokerBase`).

Every script is ``_prelude.lua`` + ``<name>.lua``. The scripts name every key as ``prefix .. K.<name>``, and
loading replaces each ``K.<name>`` with its suffix from :data:`~aqueue._redis.keys.SUFFIXES` as a string literal
(``K.job`` becomes ``'job:'``), so key names live in ``keys.py`` alone and cost the scripts nothing at run time: a
table built in Lua would be built again at every call (a script cannot keep globals), about 2 µs per drained job.
An unknown ``K.<name>`` fails at import.
"""

from __future__ import annotations

import re
from importlib import resources

from aqueue._redis.keys import SUFFIXES

__all__ = ["NAMES", "SOURCES", "command_at", "with_key_names"]

#: The scripts, by file name under ``lua/`` (without ``.lua``).
NAMES = (
    "enqueue", "claim", "settle", "promote", "heartbeat", "release", "snapshot", "requeue", "cancel", "progress",
    "cleanup", "cron",
)  # fmt: skip

_KEY_REF = re.compile(r"\bK\.(\w+)")
_PLAIN = re.compile(r"[A-Za-z0-9_:]*")  # a suffix that needs no escaping inside a Lua string literal


def with_key_names(source: str) -> str:
    """``source`` with every ``K.<name>`` replaced by the suffix of ``<name>`` as a Lua string literal; a name
    :data:`~aqueue._redis.keys.SUFFIXES` lacks raises :class:`KeyError`."""
    return _KEY_REF.sub(lambda m: f"'{SUFFIXES[m.group(1)]}'", source)


def _load_sources() -> dict[str, str]:
    odd = {name: suffix for name, suffix in SUFFIXES.items() if not _PLAIN.fullmatch(suffix)}
    if odd:
        raise ValueError(f"key suffixes that cannot stand in a plain Lua string literal: {odd}")
    lua = resources.files("aqueue._redis").joinpath("lua")
    head = lua.joinpath("_prelude.lua").read_text()
    return {name: with_key_names(head + "\n" + lua.joinpath(f"{name}.lua").read_text()) for name in NAMES}


#: The source of each script as loaded into Redis (so a line number Redis reports is a line of it).
SOURCES = _load_sources()


def command_at(name: str, line: int) -> str | None:
    """The Redis command called at ``line`` of the script ``name``, e.g. ``TIME (in aqueue's enqueue script)``."""
    lines = SOURCES[name].splitlines() if name in SOURCES else []
    found = re.search(r"redis\.p?call\(\s*['\"](\w+)", lines[line - 1]) if 0 < line <= len(lines) else None
    return f"{found.group(1).upper()} (in aqueue's {name} script)" if found else None
