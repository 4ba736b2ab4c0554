"""The README's example runs as it stands, so it cannot rot."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs_and_prints_what_its_comments_say() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    assert out.getvalue().split() == ["cat.png@640", "999.png@64"]
