"""Key names come from one place: ``aqueue/_redis/keys.py``, for the Python side and, substituted for each
``K.<name>`` when the scripts load, for the Lua. And the names themselves stay what the Redis layout says
(docs/architecture.md).

Static checks (no Redis): they read the Lua sources, and run substituted names in fakeredis's Lua.
"""

from __future__ import annotations

import re
from importlib import resources

import fakeredis
import orjson
import pytest

from aqueue._redis.keys import SUFFIXES, Keys
from aqueue._redis.scripts import NAMES, SOURCES, with_key_names

pytestmark = pytest.mark.no_redis

KEYS = Keys("q", ("high", "normal", "low"))
PREFIX = "aqueue:{q}:"

#: One string literal or comment of Lua source (single or double quotes; ``--`` comments to the end of the line).
_TOKEN = re.compile(r"""--[^\n]*|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\"""")


def _lua_files() -> dict[str, str]:
    lua = resources.files("aqueue._redis").joinpath("lua")
    return {f"{name}.lua": lua.joinpath(f"{name}.lua").read_text() for name in ("_prelude", *NAMES)}


def _code_and_literals(source: str) -> tuple[str, list[str]]:
    """The source with comments dropped and each string literal replaced by ``'$'``, and the literals' values."""
    literals: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group().startswith("--"):
            return ""
        literals.append(match.group()[1:-1])
        return "'$'"

    return _TOKEN.sub(replace, source), literals


def spelled_keys(source: str) -> list[str]:
    """Where a Lua source names a key suffix literally instead of through ``K``: a literal that is a suffix with a
    ``:`` (``'job:'``, ``'stats:task'``, never a status or a field), a literal or a queue-prefix-like literal
    concatenated to the prefix (``prefix .. 'scheduled'``, ``ARGV[1] .. 'job:'``), or a ``K.<name>`` that keys.py
    does not define."""
    code, literals = _code_and_literals(source)
    found = [f"literal {v!r}" for v in literals if (v in SUFFIXES.values() and ":" in v) or v.startswith("aqueue:")]
    found += [f"prefix then a literal: {m.group()!r}" for m in re.finditer(r"(\bprefix|ARGV\[1\])\s*\.\.\s*'\$'", code)]
    found += [f"unknown key K.{m.group(1)}" for m in re.finditer(r"\bK\.(\w+)", code) if m.group(1) not in SUFFIXES]
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    assert spelled_keys("local rec = c.prefix .. 'job:' .. id") != []
    assert spelled_keys("redis.call('ZADD', prefix .. 'scheduled', 1, id)") != []
    assert spelled_keys("local rec = ARGV[1] .. 'job:' .. ARGV[3]") != []
    assert spelled_keys("redis.call('HINCRBY', key, 'stats:task', 1)") != []
    assert spelled_keys("local k = 'aqueue:{q}:events'") != []
    assert spelled_keys("local rec = prefix .. K.jobs .. id") == ["unknown key K.jobs"]
    fine = "-- prefix .. 'job:' in a comment\nlocal rec = c.prefix .. K.job .. id\nHSET(rec, 'status', 'scheduled')"
    assert spelled_keys(fine) == []


@pytest.mark.parametrize("name", ["_prelude.lua", *(f"{n}.lua" for n in NAMES)])
def test_lua_names_every_key_through_the_table(name: str) -> None:
    assert spelled_keys(_lua_files()[name]) == []


def test_every_key_reference_is_replaced_by_its_suffix_when_the_scripts_load() -> None:
    for name, source in SOURCES.items():
        assert re.search(r"\bK\.\w", source) is None, name  # nothing left for Lua to look up at run time
    assert with_key_names("local r = prefix .. K.job .. id") == "local r = prefix .. 'job:' .. id"
    with pytest.raises(KeyError):
        with_key_names("prefix .. K.jobs")
    lua = resources.files("aqueue._redis").joinpath("lua")
    settle = lua.joinpath("_prelude.lua").read_text() + "\n" + lua.joinpath("settle.lua").read_text()
    assert SOURCES["settle"].count("\n") == settle.count("\n")  # line numbers Redis reports stay the files'


def test_the_substituted_names_are_the_suffixes_of_keys_py() -> None:
    # Run by fakeredis's Lua (the runtime of memory://), as a script would run it: each K.<name> is its suffix.
    server = fakeredis.FakeStrictRedis()
    names = list(SUFFIXES)
    script = with_key_names("return cjson.encode({" + ", ".join(f"K.{n}" for n in names) + "})")
    assert dict(zip(names, orjson.loads(server.eval(script, 0)), strict=True)) == dict(SUFFIXES)


def test_keys_py_builds_every_key_from_its_suffixes() -> None:
    """Each suffix names the :class:`Keys` member that builds it, and the member is prefix + suffix (+ id)."""
    for name, suffix in SUFFIXES.items():
        member = getattr(KEYS, name)
        built = member("x") if callable(member) else member
        assert built == PREFIX + suffix + ("x" if callable(member) else ""), name
    assert KEYS.prefix == PREFIX


def test_the_key_names_are_the_frozen_redis_layout() -> None:
    """The names docs/architecture.md lists (Redis layout): a change here is a change of the wire, not a move."""
    assert KEYS.streams == [PREFIX + "stream:high", PREFIX + "stream:normal", PREFIX + "stream:low"]
    assert {name: getattr(KEYS, name) for name in ("scheduled", "events", "dead", "stats", "task_stats", "scaling",
                                                   "wake", "workers", "control", "paused", "cron", "rate_queue")} == {
        "scheduled": PREFIX + "scheduled",
        "events": PREFIX + "events",
        "dead": PREFIX + "dead",
        "stats": PREFIX + "stats",
        "task_stats": PREFIX + "stats:task",
        "scaling": PREFIX + "scaling",
        "wake": PREFIX + "wake",
        "workers": PREFIX + "workers",
        "control": PREFIX + "control",
        "paused": PREFIX + "paused",
        "cron": PREFIX + "cron",
        "rate_queue": PREFIX + "rate:queue",
    }  # fmt: skip
    assert KEYS.job("1") == PREFIX + "job:1"
    assert KEYS.worker("w") == PREFIX + "worker:w"
    assert KEYS.workflow("1") == PREFIX + "wf:1"
    assert KEYS.done("dead") == PREFIX + "done:dead"
    assert KEYS.dedup("k") == PREFIX + "dedup:k"
    assert KEYS.rate_task("t") == PREFIX + "rate:task:t"
