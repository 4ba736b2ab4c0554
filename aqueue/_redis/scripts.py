"""The Lua scripts, assembled once at import: the key table, the prelude, then the script.

Stage: every state change of a job (enqueue, claim and start, settle, promote, heartbeat, release, cancel,
progress, requeue, cleanup, cron) is one of these scripts, and each writes its own events. The broker loads them
with SCRIPT LOAD and calls them by SHA (:class:`~aqueue._redis.base.BrokerBase`).

Every script is ``K`` + ``_prelude.lua`` + ``<name>.lua``, where ``K`` is one generated line, ``local K = {job =
'job:', ...}``, built from :data:`~aqueue._redis.keys.SUFFIXES`: the scripts name every key as ``prefix .. K.<name>``
so key names live in ``keys.py`` alone.
"""

from __future__ import annotations

import re
from importlib import resources

from aqueue._redis.keys import SUFFIXES

__all__ = ["NAMES", "SOURCES", "command_at", "lua_keys"]

#: The scripts, by file name under ``lua/`` (without ``.lua``).
NAMES = (
    "enqueue", "claim", "settle", "promote", "heartbeat", "release", "snapshot", "requeue", "cancel", "progress",
    "cleanup", "cron",
)  # fmt: skip

_PLAIN = re.compile(r"[A-Za-z0-9_:]*")
_LUA_RESERVED = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
    "not", "or", "repeat", "return", "then", "true", "until", "while",
))  # fmt: skip


def lua_keys() -> str:
    """The Lua line that gives every script the key suffixes of :data:`~aqueue._redis.keys.SUFFIXES` as ``K``."""
    for name, suffix in SUFFIXES.items():
        if not name.isidentifier() or name in _LUA_RESERVED or not _PLAIN.fullmatch(suffix):  # no escaping needed
            raise ValueError(f"key suffix {name}={suffix!r} cannot go into the Lua key table")
    fields = ", ".join(f"{name} = '{suffix}'" for name, suffix in SUFFIXES.items())
    return f"local K = {{{fields}}}  -- key suffixes after the queue prefix, from aqueue/_redis/keys.py"


def _load_sources() -> dict[str, str]:
    lua = resources.files("aqueue._redis").joinpath("lua")
    head = lua_keys() + "\n" + lua.joinpath("_prelude.lua").read_text()
    return {name: head + "\n" + lua.joinpath(f"{name}.lua").read_text() for name in NAMES}


#: The source of each script as loaded into Redis (so a line number Redis reports is a line of it).
SOURCES = _load_sources()


def command_at(name: str, line: int) -> str | None:
    """The Redis command called at ``line`` of the script ``name``, e.g. ``TIME (in aqueue's enqueue script)``."""
    lines = SOURCES[name].splitlines() if name in SOURCES else []
    found = re.search(r"redis\.p?call\(\s*['\"](\w+)", lines[line - 1]) if 0 < line <= len(lines) else None
    return f"{found.group(1).upper()} (in aqueue's {name} script)" if found else None
