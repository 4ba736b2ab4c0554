"""The CLI's argument parsing: the one-line-error parser, value converters shared by flags and their ``AQUEUE_*``
environment variables, and :func:`option`, which adds a flag that falls back to its environment variable.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

from aqueue._core.options import parse_at

__all__ = [
    "LEVELS",
    "CliError",
    "Parser",
    "apply_env",
    "bind",
    "choice",
    "count",
    "cpu_count",
    "meta_list",
    "meta_pair",
    "non_negative",
    "number",
    "option",
    "origins",
    "positive",
]

LEVELS = ("debug", "info", "warning", "error", "critical")


class CliError(Exception):
    """A user error: reported as one ``aqueue: error: …`` line with exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`CliError` and whose commands take positionals after options."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Parse intermixed options and positionals (see the comment inside)."""
        # A command's positionals may follow its options (`aqueue cancel app:tasks --queue q ID…`): plain argparse
        # would give a `nargs="*"` positional nothing right after MODULE:ATTR and reject the ids that come later.
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back in here
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        """Raise :class:`CliError`: argparse would print the usage block too; the contract is a single line."""
        raise CliError(message)


# -- value parsing (shared by flags and their AQUEUE_* environment variables) --------------------------------


def number(kind: Callable[[str], float], minimum: float, strict: bool) -> Callable[[str], Any]:
    """A converter to ``kind`` (int or float) that refuses values below ``minimum`` (or equal, when ``strict``)."""
    what = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {minimum:g}"

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        # NaN and infinity would pass a comparison and then break arithmetic in the worker.
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


count = number(int, 1, strict=False)
positive = number(float, 0, strict=True)
non_negative = number(float, 0, strict=False)


def cpu_count(text: str) -> int:
    """An integer from 1 to 1024: the size of a worker's process pool (``--cpu-workers``)."""
    value: int = count(text)
    if value > 1024:
        raise argparse.ArgumentTypeError(f"expected an integer from 1 to 1024, got {text!r}")
    return value


def aware_time(text: str) -> datetime:
    """An ISO 8601 date and time with its UTC offset (``2026-12-24T09:00:00+00:00``, or ``Z``): ``--at``."""
    try:
        return parse_at(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def choice(*allowed: str) -> Callable[[str], str]:
    """A converter accepting one of ``allowed`` (case-insensitive), returned lower-cased."""

    def convert(text: str) -> str:
        if text.lower() not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text.lower()

    return convert


def bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) to serve the web app on; port 0 picks a free one."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, int(port)


def origins(text: str) -> tuple[str, ...]:
    """Comma-separated origins such as ``https://admin.example.com,http://localhost:3000``."""
    found = tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())
    bad = [o for o in found if not re.fullmatch(r"https?://[^/\s]+", o)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected origins like https://host[:port], got {', '.join(bad)}")
    return found


def meta_pair(text: str) -> tuple[str, str]:
    """``KEY=VALUE``, one entry of a worker's metadata (``--meta version=1.4.2``; the worker checks the rest)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as version=1.4.2, got {text!r}")
    return key.strip(), value


def meta_list(text: str) -> list[tuple[str, str]]:
    """Comma-separated ``KEY=VALUE`` entries (``$AQUEUE_META``: ``version=1.4.2,region=eu``)."""
    return [meta_pair(item) for item in text.split(",") if item.strip()]


def _flag(text: str) -> bool:
    if text.lower() not in ("", "0", "false", "no", "off", "1", "true", "yes", "on"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("1", "true", "yes", "on")


def option(
    p: argparse.ArgumentParser,
    flag: str,
    env: str,
    default: Any,
    help: str,
    env_type: Callable[[str], Any] | None = None,
    **kw: Any,
) -> None:
    """Add ``flag``, also read from ``$env`` when the flag is absent (the flag wins); ``env_type`` converts the
    variable when it differs from the flag's ``type`` (a repeatable flag's list)."""
    convert = _flag if kw.get("action") == "store_true" else kw.setdefault("type", str)
    convert = env_type or convert
    action = p.add_argument(flag, default=None, help=f"{help} [env {env}]", **kw)
    specs: list[tuple[str, str, Callable[[str], Any], Any]] | None = p.get_default("env_specs")
    if specs is None:
        specs = []
        p.set_defaults(env_specs=specs)
    specs.append((action.dest, env, convert, default))


def apply_env(args: argparse.Namespace) -> None:
    """Fill each :func:`option` the command line left out from its environment variable, else its default."""
    for dest, env, convert, default in getattr(args, "env_specs", None) or ():
        if getattr(args, dest) is not None:
            continue
        value, text = default, os.environ.get(env)
        if text is not None:
            try:
                value = convert(text)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise CliError(f"${env}: {exc}") from None
        setattr(args, dest, value)
