"""The package's shape, checked: imports form no cycle, modules stay small, functions stay simple.

Pure static checks over ``aqueue/`` (no Redis): they read the source with :mod:`ast`, counting every import,
including those inside functions and under ``TYPE_CHECKING``, since a function-level import runs all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aqueue

PACKAGE = Path(aqueue.__file__).parent
MAX_LINES = 400  # per module
MAX_COMPLEXITY = 15  # per function, counted as radon counts cyclomatic complexity

pytestmark = pytest.mark.no_redis


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (the nearest module for ``from pkg import name``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                target = _target(name, modules)
                if target is not None and target != module and target.startswith("aqueue"):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def complexity(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Cyclomatic complexity as radon counts it: 1, plus one per branch, loop, handler, boolean operator, ternary,
    comprehension and ``case``; nested functions and classes are counted on their own."""
    score = 1
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.If | ast.IfExp | ast.Assert | ast.match_case):
            score += 1
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            score += 1 + bool(node.orelse)
        elif isinstance(node, ast.Try | ast.TryStar):
            score += len(node.handlers) + bool(node.orelse)
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        todo.extend(ast.iter_child_nodes(node))
    return score


def test_the_checks_find_what_they_look_for() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = "def f(x):\n    if x and x > 1:\n        return [y for y in x if y]\n    for _ in x:\n        pass\n"
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert complexity(fn) == 6  # 1 + if + and + comprehension + its if + for
    assert "aqueue._core.tasks" in import_graph()["aqueue"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_no_module_is_too_long() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines"


def test_no_function_is_too_branchy() -> None:
    branchy = {}
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (c := complexity(node)) > MAX_COMPLEXITY:
                branchy[f"{module}:{node.lineno} {node.name}"] = c
    assert branchy == {}, f"functions over complexity {MAX_COMPLEXITY}"
