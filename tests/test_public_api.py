"""The public API is exactly what ``aqueue.__all__`` says, and every public name is documented."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest

import aqueue

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(aqueue) if not name.startswith("_")}
    modules = {name for name, value in vars(aqueue).items() if inspect.ismodule(value)}
    assert set(aqueue.__all__) == public - modules
    assert len(aqueue.__all__) == len(set(aqueue.__all__))


def test_every_public_name_has_a_docstring() -> None:
    for name in aqueue.__all__:
        value = getattr(aqueue, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"aqueue.{name} has no docstring"


def test_the_package_never_uses_pickle_or_eval() -> None:
    root = pathlib.Path(aqueue.__file__).parent
    pattern = re.compile(r"\b(import pickle|pickle\.|eval\(|exec\()")
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
