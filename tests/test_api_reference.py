"""docs/api.md, the API reference that docs/gen_api.py generates from the docstrings, is complete and up to date.

tests/test_public_api.py checks that ``aqueue.__all__`` is exactly the public names and that each public class and
function has a docstring; this module checks the page built from them, and the docstrings of the members it lists.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import aqueue
import aqueue.web

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_MD = DOCS / "api.md"
REGENERATE = "run `python docs/gen_api.py` to regenerate it"


def _load_generator() -> ModuleType:
    """docs/gen_api.py as a module (docs/ is not a package)."""
    name = "_aqueue_docs_gen_api"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCS / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look up their module while the class is created
    spec.loader.exec_module(module)
    return module


gen_api = _load_generator()


@pytest.fixture(scope="module")
def page() -> str:
    return API_MD.read_text()


def _headings(text: str) -> list[str]:
    """The heading lines of a Markdown page, outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line)
    return out


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings (a repeated one gets ``-1``, ``-2``…)."""
    anchors: set[str] = set()
    used: dict[str, int] = {}
    for heading in _headings(text):
        base = gen_api.slug(heading.lstrip("#").strip())
        anchors.add(base if base not in used else f"{base}-{used[base]}")
        used[base] = used.get(base, 0) + 1
    return anchors


def test_api_md_is_what_the_generator_writes(page: str) -> None:
    expected = gen_api.render()
    if page != expected:
        diff = difflib.unified_diff(page.splitlines(), expected.splitlines(), "docs/api.md", "generated", lineterm="")
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/api.md is out of date: {REGENERATE}.\n{shown}", pytrace=False)


def test_the_generator_is_deterministic() -> None:
    assert gen_api.render() == gen_api.render()


def test_every_public_name_has_a_heading(page: str) -> None:
    headings = set(_headings(page))
    names = [f"aqueue.{n}" for n in aqueue.__all__] + [f"aqueue.web.{n}" for n in aqueue.web.__all__]
    missing = [n for n in names if f"### {n}" not in headings]
    where = "add them to GROUPS in docs/gen_api.py, then " + REGENERATE
    assert not missing, f"no '### NAME' heading in docs/api.md for {', '.join(missing)}: {where}"


def test_every_public_method_and_property_has_a_docstring() -> None:
    offenders = gen_api.undocumented_members()
    assert not offenders, f"public methods/properties without a docstring: {', '.join(offenders)}"


def test_every_public_class_lists_its_members(page: str) -> None:
    headings = set(_headings(page))
    missing = [
        f"{cls.__name__}.{m.name}"
        for _, cls in gen_api.public_classes()
        for m in gen_api.public_members(cls)
        if f"#### `{cls.__name__}.{m.name}`" not in headings
    ]
    assert not missing, f"members without a heading in docs/api.md: {', '.join(missing)}; {REGENERATE}"


LINKING = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("linking", LINKING, ids=[p.name for p in LINKING])
def test_every_relative_link_leads_to_a_file_and_heading(linking: Path) -> None:
    """Every link of README.md and the docs pages to a file of the repository (and its #heading) resolves."""
    text = re.sub(r"```.*?```", "", linking.read_text(), flags=re.S)  # links inside code blocks are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (linking.parent / path).resolve() if path else linking
        exists = linked.exists()
        if not exists or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text())):
            broken.append(target)
    assert not broken, f"links in {linking.name} to no file or heading: {', '.join(sorted(set(broken)))}"


def test_check_mode_fails_on_a_stale_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# API reference\n\nsomething old\n")
    monkeypatch.setattr(gen_api, "API_MD", stale)
    assert gen_api.main(["--check"]) == 1
    assert "run `python docs/gen_api.py`" in capsys.readouterr().err
    assert gen_api.main([]) == 0
    assert gen_api.main(["--check"]) == 0
    assert stale.read_text() == gen_api.render()
