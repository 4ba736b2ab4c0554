"""Generate docs/api.md, the public API reference, from the docstrings of ``aqueue``.

    python docs/gen_api.py          # write docs/api.md
    python docs/gen_api.py --check  # exit 1 if docs/api.md differs from what this script would write

Every name of ``aqueue.__all__`` and ``aqueue.web.__all__`` is documented, in the groups of :data:`GROUPS` (a name
in no group, or a group entry that is not public, is an error: place new names deliberately). A class gets its
constructor signature, its docstring, its fields (dataclasses), members (enums) or attributes (``self.x = …`` in
``__init__``, class-level annotations) with their ``#:`` comments, then every public method, property and
classmethod it (or an aqueue base class) defines, each with its signature and docstring. Annotations are printed as
written in the source (the modules use ``from __future__ import annotations``). The output depends only on the
source, so it is the same on every run and every machine.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import enum
import importlib
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # document the aqueue of this tree, even when run as ``python docs/gen_api.py``

#: The page's sections, in order: (title, introduction, public names). Every public name is in exactly one.
GROUPS: list[tuple[str, str, list[str]]] = [
    (
        "Defining tasks and enqueueing",
        "A `Tasks` registry holds a queue's tasks and settings; `@tasks.task` turns a function into a `Task`, whose "
        "`enqueue` returns a `Job` handle. Guides: [tasks and enqueueing](tasks.md), [priorities](priorities.md), "
        "[retries](retries.md), [delays, TTL and cron](scheduling.md), [rate limits and dedup](ratelimits-dedup.md).",
        [
            "aqueue.Tasks",
            "aqueue.Task",
            "aqueue.JobSpec",
            "aqueue.JobOptions",
            "aqueue.KEEP_FOREVER",
            "aqueue.StoredOptions",
            "aqueue.Job",
            "aqueue.JobRecord",
            "aqueue.LogLine",
            "aqueue.JobStatus",
            "aqueue.Priority",
            "aqueue.QueueSettings",
            "aqueue.RetryPolicy",
            "aqueue.RateLimit",
            "aqueue.CronJob",
            "aqueue.CronStatus",
            "aqueue.CronSchedule",
            "aqueue.QueueInfo",
            "aqueue.LimitUsage",
        ],
    ),
    (
        "Running workers",
        "A `Worker` claims and runs the jobs of one or several `Tasks` queues ([queues](queues.md)); with a "
        "concurrency range, a `Strategy` sizes it from `MetricsSnapshot`s. Guides: "
        "[running workers](tasks.md#running-workers), "
        "[autoscaling](autoscaling.md), [deployment](deployment.md).",
        ["aqueue.Worker", "aqueue.Strategy", "aqueue.Decision", "aqueue.MetricsSnapshot"],
    ),
    (
        "Inside a task",
        "What a running task (or a middleware) can call or raise. Guides: [progress](control.md#progress), "
        "[the task decides](retries.md#the-task-decides), "
        "[lifespan and resources](extending.md#lifespan-and-resources), [middleware](extending.md#middleware).",
        [
            "aqueue.JobContext",
            "aqueue.current_job",
            "aqueue.progress",
            "aqueue.resources",
            "aqueue.TaskSignal",
            "aqueue.Retry",
            "aqueue.Reject",
        ],
    ),
    (
        "Workflows",
        "Jobs that wait for other jobs: chains and DAGs with failure branches. Guide: [workflows](workflows.md).",
        ["aqueue.Chain", "aqueue.Step", "aqueue.Workflow", "aqueue.WorkflowHandle"],
    ),
    (
        "Listing, dead letters and re-runs",
        "What the admin methods of `Tasks` return: `jobs()` a `JobPage` of `JobSummary` entries, `dead_letters()` a "
        "`DeadLetterPage` of `DeadLetter` entries, `retry()` and `reprocess()` a `RequeueResult`. Guides: "
        "[from Python](control.md#from-python), "
        "[listing and reprocessing](retries.md#listing-and-reprocessing).",
        ["aqueue.JobPage", "aqueue.JobSummary", "aqueue.DeadLetterPage", "aqueue.DeadLetter", "aqueue.RequeueResult"],
    ),
    (
        "Errors",
        "Every error aqueue raises derives from `AqueueError`; `JobFailed` and `JobCancelled` share `NoResult`. "
        "`Retry` and `Reject`, raised by tasks, are `TaskSignal`s, not errors: see [Inside a task](#inside-a-task). "
        "Guide: [errors](tasks.md#errors).",
        [
            "aqueue.AqueueError",
            "aqueue.ConfigurationError",
            "aqueue.SerializationError",
            "aqueue.InvalidArguments",
            "aqueue.BrokerUnavailable",
            "aqueue.PartialEnqueue",
            "aqueue.PermissionDenied",
            "aqueue.UnknownJob",
            "aqueue.ResultTimeout",
            "aqueue.LifespanError",
            "aqueue.NoResult",
            "aqueue.JobFailed",
            "aqueue.JobCancelled",
        ],
    ),
    (
        "Events",
        "Every state change writes an event to the queue's events stream, in the same script call. Guide: the "
        "[WebSocket's event messages](web.md#server-messages), which list each type's fields.",
        ["aqueue.EVENT_TYPES"],
    ),
    (
        "Web",
        "The aiohttp sub-app: status, health, metrics, the REST job API, live events and the dashboard. Guide: "
        "[the web app](web.md).",
        ["aqueue.web.create_app"],
    ),
]

#: Dunder methods that are part of the API (calling a task, ``async with tasks``); every other dunder is machinery.
API_DUNDERS = ("__call__", "__aenter__", "__aexit__")
#: A rendered signature longer than this is written one parameter per line.
MAX_LINE = 100

INTRO = """\
# API reference

Every public name of `aqueue` (what `aqueue.__all__` lists) and of `aqueue.web`, with signatures and docstrings.
The guides in this directory explain how the pieces fit together; this page is the reference to look things up in.
Annotations are shown as written in the source. Methods marked `async` are coroutines: `await` them.

<!-- Generated by docs/gen_api.py from the docstrings: edit those, then run `python docs/gen_api.py`. -->
"""


# -- the public names -------------------------------------------------------------------------------------------


def public_objects() -> dict[str, Any]:
    """Every documented name (``aqueue.X`` or ``aqueue.web.X``) and its object, in ``__all__`` order."""
    out: dict[str, Any] = {}
    for module_name in ("aqueue", "aqueue.web"):
        module = importlib.import_module(module_name)
        for name in module.__all__:
            out[f"{module_name}.{name}"] = getattr(module, name)
    return out


def grouped() -> list[tuple[str, str, list[tuple[str, Any]]]]:
    """:data:`GROUPS` with each name's object; raises ``SystemExit`` if a public name is missing or unknown."""
    objects = public_objects()
    placed = [name for _, _, names in GROUPS for name in names]
    problems = [f"{n} is public but in no group of docs/gen_api.py GROUPS" for n in objects if n not in placed]
    problems += [f"{n} is in GROUPS but not public (not in __all__)" for n in placed if n not in objects]
    problems += [f"{n} is in GROUPS twice" for n in sorted({n for n in placed if placed.count(n) > 1})]
    if problems:
        raise SystemExit("docs/gen_api.py: " + "; ".join(problems))
    return [(title, intro, [(n, objects[n]) for n in names]) for title, intro, names in GROUPS]


def is_aqueue(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "aqueue" or module.startswith("aqueue.")


# -- members ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Member:
    """A documented method, property, classmethod, staticmethod or alias of a public class."""

    owner: type  #: the class the member is documented under
    name: str
    kind: str  #: ``method``, ``classmethod``, ``staticmethod``, ``property`` or ``alias``
    func: Callable[..., Any]  #: the function (a property's getter)
    defined_in: type  #: the class that defines it (``owner`` or an aqueue base class)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.func) or ""


def public_members(cls: type) -> list[Member]:
    """The public methods, properties and aliases of ``cls``, in source order, own ones first, then those of aqueue
    base classes. Machinery inherited from ``object``, ``Exception``, ``Enum``, ``Protocol`` or generated by
    ``dataclass`` is left out (it is not defined in aqueue)."""
    members: list[Member] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not is_aqueue(klass):
            continue
        for name, value in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in API_DUNDERS):
                continue
            member = _member(cls, klass, name, value)
            if member is not None:
                seen.add(name)
                members.append(member)
    return members


def _member(owner: type, klass: type, name: str, value: Any) -> Member | None:
    if isinstance(value, property):
        func, kind = value.fget, "property"
    elif isinstance(value, classmethod):
        func, kind = value.__func__, "classmethod"
    elif isinstance(value, staticmethod):
        func, kind = value.__func__, "staticmethod"
    elif isinstance(value, types.FunctionType):
        func, kind = value, ("method" if value.__name__ == name else "alias")
    else:
        return None
    if func is None or not is_aqueue(func):
        return None
    return Member(owner, name, kind, func, klass)


def public_classes() -> list[tuple[str, type]]:
    """Every public class, by its documented name."""
    return [(name, obj) for name, obj in public_objects().items() if inspect.isclass(obj)]


def undocumented_members() -> list[str]:
    """``Class.member`` for every public method/property of a public class without a docstring."""
    return [f"{name}.{m.name}" for name, cls in public_classes() for m in public_members(cls) if not m.doc.strip()]


# -- source: attribute comments, bases ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Attribute:
    name: str
    annotation: str | None
    default: str | None
    doc: str


class ClassSource:
    """A class's source: its bases as written and the ``#:`` doc comments of its attributes."""

    def __init__(self, cls: type) -> None:
        source = textwrap.dedent(inspect.getsource(cls))
        self.lines = source.splitlines()
        tree = ast.parse(source).body[0]
        assert isinstance(tree, ast.ClassDef)
        self.tree = tree
        self.comments = _doc_comments(source)

    def bases(self) -> list[str]:
        return [ast.unparse(b) for b in self.tree.bases]

    def doc_for(self, node: ast.stmt) -> str:
        return _doc_above_or_beside(node, self.lines, self.comments)

    def class_level(self) -> Iterator[tuple[str, ast.stmt]]:
        """(name, statement) of each plain-name assignment in the class body."""
        for stmt in self.tree.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                yield stmt.target.id, stmt
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        yield target.id, stmt

    def init_attributes(self, cls: type) -> list[Attribute]:
        """Public attributes ``__init__`` sets on ``self``, with a type where the source states or implies one."""
        init = next(
            (
                s
                for s in self.tree.body
                if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and s.name == "__init__"
            ),
            None,
        )
        if init is None:
            return []
        params = {p.name: p.annotation for p in inspect.signature(vars(cls)["__init__"]).parameters.values()}
        scope = vars(sys.modules[cls.__module__])
        out: dict[str, Attribute] = {}
        for stmt in ast.walk(init):
            targets: list[ast.expr]
            if isinstance(stmt, ast.AnnAssign):
                targets, value, annotation = [stmt.target], stmt.value, ast.unparse(stmt.annotation)
            elif isinstance(stmt, ast.Assign):
                targets, value, annotation = stmt.targets, stmt.value, None
            else:
                continue
            flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
            for t in flat:
                if not (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"):
                    continue
                if t.attr.startswith("_") or t.attr in out:
                    continue
                if annotation is not None:
                    guessed: str | None = annotation
                elif len(flat) > 1:
                    guessed = _tuple_items(_implied_type(value, params, scope), len(flat))[flat.index(t)]
                else:
                    guessed = _implied_type(value, params, scope)
                out[t.attr] = Attribute(t.attr, guessed, None, self.doc_for(stmt))
        return sorted(out.values(), key=lambda a: _first_line(init, a.name))


def _first_line(init: ast.AST, attr: str) -> int:
    lines = [
        n.lineno
        for n in ast.walk(init)
        if isinstance(n, ast.Attribute) and n.attr == attr and isinstance(n.ctx, ast.Store)
    ]
    return min(lines)


def _implied_type(value: ast.expr | None, params: dict[str, Any], scope: dict[str, Any]) -> str | None:
    """The type of ``self.x = value`` when the source makes it plain: a parameter (``x or default`` and ``x if …
    else default`` drop ``| None``), a literal, or a call of a function or class method with a return annotation."""
    if isinstance(value, ast.Name) and isinstance(params.get(value.id), str):
        return str(params[value.id])
    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
        first = _implied_type(value.values[0], params, scope)
        return first.removesuffix(" | None") if first else None
    if isinstance(value, ast.IfExp):
        body = _implied_type(value.body, params, scope)
        if body is None:
            return None
        if isinstance(value.orelse, ast.Constant) and value.orelse.value is None:
            return body if body.endswith(" | None") else f"{body} | None"
        return body.removesuffix(" | None")
    if isinstance(value, ast.Constant) and value.value is not None:
        return type(value.value).__name__
    if isinstance(value, ast.Call):
        returns = inspect.signature(func).return_annotation if (func := _resolve(value.func, scope)) else None
        return returns if isinstance(returns, str) and returns != "Any" else None
    return None


def _resolve(expr: ast.expr, scope: dict[str, Any]) -> Any:
    """The object a ``name`` or ``name.attr…`` expression names in a module's namespace, if it is a function."""
    if isinstance(expr, ast.Name):
        obj = scope.get(expr.id)
    elif isinstance(expr, ast.Attribute):
        obj = getattr(_resolve_any(expr.value, scope), expr.attr, None)
    else:
        return None
    return obj if inspect.isfunction(obj) or inspect.ismethod(obj) else None


def _resolve_any(expr: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(expr, ast.Name):
        return scope.get(expr.id)
    if isinstance(expr, ast.Attribute):
        return getattr(_resolve_any(expr.value, scope), expr.attr, None)
    return None


def _tuple_items(annotation: str | None, count: int) -> list[str | None]:
    """The item types of a ``tuple[A, B, …]`` annotation with ``count`` items (Nones when it is not one)."""
    node = ast.parse(annotation, mode="eval").body if annotation else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Tuple) and len(node.slice.elts) == count:
        return [ast.unparse(e) for e in node.slice.elts]
    return [None] * count


def _doc_comments(source: str) -> dict[int, str]:
    """Line number → text of each ``#:`` comment in ``source``."""
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            out[tok.start[0]] = tok.string[2:].strip()
    return out


def _doc_above_or_beside(node: ast.stmt, lines: list[str], comments: dict[int, str]) -> str:
    """The ``#:`` comment at the end of the statement's first line, else the ``#:`` lines right above it."""
    if node.lineno in comments and not lines[node.lineno - 1].lstrip().startswith("#:"):
        return comments[node.lineno]
    above: list[str] = []
    line = node.lineno - 1
    while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#:"):
        above.insert(0, comments[line])
        line -= 1
    return " ".join(above)


def _assigned(stmt: ast.stmt) -> list[ast.expr]:
    """The targets of an assignment statement (none for other statements)."""
    if isinstance(stmt, ast.Assign):
        return stmt.targets
    return [stmt.target] if isinstance(stmt, ast.AnnAssign) else []


def module_constant_doc(value: Any, name: str) -> tuple[str, str]:
    """(defining module, ``#:`` comment) of a module-level constant: the imported aqueue module that assigns it."""
    for module_name in sorted(m for m in sys.modules if m == "aqueue" or m.startswith("aqueue.")):
        module = sys.modules[module_name]
        if vars(module).get(name) is not value:
            continue
        source = inspect.getsource(module)
        tree = ast.parse(source)
        for stmt in tree.body:
            targets = _assigned(stmt)
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return module_name, _doc_above_or_beside(stmt, source.splitlines(), _doc_comments(source))
    raise SystemExit(f"docs/gen_api.py: cannot find where {name} is assigned")


# -- signatures -------------------------------------------------------------------------------------------------


def annotation_text(annotation: Any) -> str:
    """An annotation as written (they are strings under ``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def value_text(value: Any) -> str:
    """A default value as Python source; strings with double quotes, like the code base."""
    if isinstance(value, str) and '"' not in value and "\\" not in value and value.isprintable():
        return f'"{value}"'
    if isinstance(value, tuple | list):
        items = ", ".join(value_text(v) for v in value)
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items}{',' if len(value) == 1 else ''})"
    if isinstance(value, frozenset | set) and value:
        return f"{type(value).__name__}({{{', '.join(sorted(value_text(v) for v in value))}}})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # ``RetryPolicy()`` when every field has its default, else every field: ``Priority(name="low", weight=1)``.
        fields = dataclasses.fields(value)
        if all(f.default is not dataclasses.MISSING and getattr(value, f.name) == f.default for f in fields):
            return f"{type(value).__name__}()"
        shown = ", ".join(f"{f.name}={value_text(getattr(value, f.name))}" for f in fields)
        return f"{type(value).__name__}({shown})"
    text = repr(value)
    if " at 0x" in text:
        raise SystemExit(f"docs/gen_api.py: the default {text} would put a memory address in the page")
    return text


def factory_text(factory: Any) -> str:
    """A dataclass ``default_factory`` as the value it makes (a lambda, which may be random, as ``<generated>``)."""
    if getattr(factory, "__name__", "") == "<lambda>":
        return "<generated>"
    return value_text(factory())


def parameter_texts(sig: inspect.Signature, defaults: dict[str, str] | None = None) -> list[str]:
    """Each parameter as source, with ``/`` and ``*`` markers where the signature needs them."""
    defaults = defaults or {}
    out: list[str] = []
    params = list(sig.parameters.values())
    star_done = False
    for i, p in enumerate(params):
        if p.kind is p.KEYWORD_ONLY and not star_done:
            out.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        text = prefix + p.name
        if p.annotation is not p.empty:
            text += f": {annotation_text(p.annotation)}"
        if p.name in defaults or p.default is not p.empty:
            default = defaults.get(p.name) or value_text(p.default)
            text += f" = {default}" if p.annotation is not p.empty else f"={default}"
        out.append(text)
        last_positional_only = p.kind is p.POSITIONAL_ONLY and (
            i + 1 == len(params) or params[i + 1].kind is not p.POSITIONAL_ONLY
        )
        if last_positional_only:
            out.append("/")
    return out


def call_text(head: str, params: list[str], tail: str = "") -> str:
    """``head(params)tail`` on one line, or one parameter per line when that is too long."""
    one_line = f"{head}({', '.join(params)}){tail}"
    if len(one_line) <= MAX_LINE or not params:
        return one_line
    body = "".join(f"    {p},\n" for p in params)
    return f"{head}(\n{body}){tail}"


def function_text(func: Callable[..., Any], name: str, kind: str = "function") -> str:
    """A function's (or method's) signature as a stub: decorators, ``async def``, parameters, return type."""
    overloads = typing.get_overloads(func)
    variants = overloads or [func]
    blocks: list[str] = []
    for variant in variants:
        sig = inspect.signature(variant)
        decorators = ["@overload"] if overloads else []
        if kind in ("classmethod", "staticmethod", "property"):
            decorators.append(f"@{kind}")
        returns = "" if sig.return_annotation is sig.empty else f" -> {annotation_text(sig.return_annotation)}"
        prefix = "async def" if inspect.iscoroutinefunction(variant) else "def"
        blocks.append("\n".join([*decorators, call_text(f"{prefix} {name}", parameter_texts(sig), returns)]))
    return "\n".join(blocks)


def class_signature(cls: type) -> str:
    """``class Name(constructor parameters)``; enums, protocols and exceptions as they are called."""
    name = cls.__name__
    if issubclass(cls, enum.Enum):
        return f"class {name}(value)"
    if getattr(cls, "_is_protocol", False):
        return f"class {name}"
    init = next((vars(k)["__init__"] for k in cls.__mro__ if is_aqueue(k) and "__init__" in vars(k)), None)
    if init is None:  # an exception class that keeps Exception's constructor
        return f"class {name}(*args)"
    defaults: dict[str, str] = {}
    if dataclasses.is_dataclass(cls):
        defaults = {
            f.name: factory_text(f.default_factory)
            for f in dataclasses.fields(cls)
            if f.default_factory is not dataclasses.MISSING
        }
    sig = inspect.signature(init)
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])  # without self
    return call_text(f"class {name}", parameter_texts(sig, defaults))


# -- docstrings to Markdown -------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|meth|func|data|exc|attr|obj|mod):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")


#: Links are written as ``#<mark>heading text<mark>`` while rendering and replaced by the heading's anchor at the end,
#: when every heading (and so GitHub's ``-1`` suffix for a repeated anchor) is known.
_MARK = "\x00"


def link(heading: str) -> str:
    """A link target to the heading with this text, resolved by :func:`resolve_links`."""
    return f"#{_MARK}{heading}{_MARK}"


class Linker:
    """Turns ``:class:`X``` references into links to the headings of this page."""

    def __init__(self) -> None:
        self.headings: dict[str, str] = {}  # ``Tasks``, ``Tasks.enqueue``, ``web.create_app`` → heading text

    def add(self, key: str, heading: str) -> None:
        self.headings.setdefault(key, heading)

    def resolve(self, target: str, context: type | None) -> str | None:
        """The link target of ``target`` (``aqueue.X``, ``X``, ``Class.member``, or a member of ``context``)."""
        target = target.removeprefix("aqueue.")
        candidates = [target, f"web.{target}"]
        if context is not None:
            candidates.insert(0, f"{context.__name__}.{target}")
        return next((link(self.headings[c]) for c in candidates if c in self.headings), None)

    def role(self, match: re.Match[str], context: type | None) -> str:
        short, target = match.group(1) == "~", match.group(2)
        shown = target.rpartition(".")[2] if short else target
        if match.group(0).startswith((":meth:", ":func:")):
            shown += "()"
        target_link = self.resolve(target, context)
        return f"[`{shown}`]({target_link})" if target_link else f"`{shown}`"


def inline(text: str, linker: Linker, context: type | None) -> str:
    """Inline markup of one line of prose: roles become links, ````x```` becomes `` `x` ``."""
    text = _ROLE.sub(lambda m: linker.role(m, context), text)
    return _LITERAL.sub(lambda m: f"`` {m.group(1)} ``" if "`" in m.group(1) else f"`{m.group(1)}`", text)


def markdown(doc: str, linker: Linker, context: type | None = None) -> str:
    """A docstring as Markdown: ``::`` literal blocks become fenced blocks, the rest is converted line by line."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            intro = line.rstrip()[:-2].rstrip()
            if intro:
                out.append(inline(intro + ":", linker, context))
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```text", *textwrap.dedent("\n".join(block)).strip("\n").splitlines(), "```", ""]
            continue
        out.append(inline(line, linker, context))
        i += 1
    return "\n".join(out).strip()


def summary(doc: str, linker: Linker, context: type | None = None) -> str:
    """The first sentence of a docstring, on one line."""
    paragraph = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    match = re.search(r"(?<=[.!?])\s+(?=[A-Z`:])", paragraph)
    sentence = paragraph[: match.start()] if match else paragraph
    return inline(sentence.rstrip(":"), linker, context)


# -- the page ---------------------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def short(qualified: str) -> str:
    """``aqueue.Tasks`` → ``Tasks``; ``aqueue.web.create_app`` → ``web.create_app``."""
    return qualified.removeprefix("aqueue.")


def member_heading(cls: type, member: Member) -> str:
    return f"`{cls.__name__}.{member.name}`"


def build_linker(groups: list[tuple[str, str, list[tuple[str, Any]]]]) -> Linker:
    linker = Linker()
    for _, _, names in groups:
        for qualified, obj in names:
            linker.add(short(qualified), qualified)
            if inspect.isclass(obj):
                for member in public_members(obj):
                    linker.add(f"{obj.__name__}.{member.name}", member_heading(obj, member))
    return linker


def resolve_links(text: str) -> str:
    """Replace each :func:`link` target by its heading's GitHub anchor (a repeated anchor gets ``-1``, ``-2``…)."""
    anchors: dict[str, str] = {}
    used: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6} (.+)$", line)
        if match is None:
            continue
        base = slug(match.group(1))
        anchor = base if base not in used else f"{base}-{used[base]}"
        used[base] = used.get(base, 0) + 1
        if match.group(1) in anchors:
            raise SystemExit(f"docs/gen_api.py: two headings read {match.group(1)!r}")
        anchors[match.group(1)] = anchor

    def anchor_of(m: re.Match[str]) -> str:
        if m.group(1) not in anchors:
            raise SystemExit(f"docs/gen_api.py: a link points to a heading that does not exist: {m.group(1)!r}")
        return "#" + anchors[m.group(1)]

    return re.sub(f"#{_MARK}(.*?){_MARK}", anchor_of, text)


def source_path(obj: Any) -> str:
    path = Path(inspect.getsourcefile(obj) or "")
    return path.resolve().relative_to(ROOT).as_posix()


def render_attributes(title: str, attributes: list[Attribute], linker: Linker, cls: type) -> list[str]:
    if not attributes:
        return []
    out = [f"**{title}**", ""]
    for a in attributes:
        code = a.name + (f": {a.annotation}" if a.annotation else "") + (f" = {a.default}" if a.default else "")
        doc = inline(_sentence(a.doc), linker, cls) if a.doc else ""
        out.append(f"- `{code}`" + (f" — {doc}" if doc else ""))
    return [*out, ""]


def _sentence(text: str) -> str:
    """``the queue's name`` → ``The queue's name.``: doc comments are written either way; the page shows sentences."""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def class_attributes(cls: type, src: ClassSource) -> tuple[str, list[Attribute]]:
    """The fields of a dataclass, the members of an enum, or a plain class's attributes, with their ``#:`` docs."""
    statements = dict(src.class_level())
    if issubclass(cls, enum.Enum):
        members = [
            Attribute(name, None, value_text(member.value), src.doc_for(statements[name]) if name in statements else "")
            for name, member in cls.__members__.items()
        ]
        return "Members", members
    if dataclasses.is_dataclass(cls):
        fields = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default: str | None = value_text(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = factory_text(f.default_factory)
            else:
                default = None
            doc = src.doc_for(statements[f.name]) if f.name in statements else ""
            fields.append(Attribute(f.name, annotation_text(f.type), default, doc))
        return "Fields", fields
    attributes = []
    for name, stmt in src.class_level():
        if name.startswith("_") or not isinstance(stmt, ast.AnnAssign):
            continue
        default = ast.unparse(stmt.value) if stmt.value is not None else None
        attributes.append(Attribute(name, ast.unparse(stmt.annotation), default, src.doc_for(stmt)))
    if "__init__" in vars(cls):
        attributes += src.init_attributes(cls)
    return "Attributes", attributes


def render_class(qualified: str, cls: type, linker: Linker) -> list[str]:
    src = ClassSource(cls)
    out = [f"### {qualified}", "", "```py", class_signature(cls), "```", ""]
    notes: list[str] = []
    if dataclasses.is_dataclass(cls):
        frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        notes.append("frozen dataclass" if frozen else "dataclass")
    if getattr(cls, "_is_runtime_protocol", False):
        notes.append(
            "a runtime-checkable protocol: any object with its attributes and methods is one (`isinstance` works)"
        )
    # A private base (the mixins Tasks is made of) is machinery: its public members are listed with the class's.
    bases = [b for b in src.bases() if b not in ("object", "Protocol") and not b.endswith("Mixin")]
    if bases:
        notes.append("bases: " + ", ".join(_code_or_link(b, linker) for b in bases))
    notes.append(f"defined in `{source_path(cls)}`")
    out += [_notes(notes), ""]
    doc = inspect.getdoc(cls) or ""
    if doc:
        out += [markdown(doc, linker, cls), ""]
    title, attributes = class_attributes(cls, src)
    out += render_attributes(title, attributes, linker, cls)
    for member in public_members(cls):
        out += render_member(cls, member, linker)
    return out


def _notes(notes: list[str]) -> str:
    """One italic line of short facts, each a sentence."""
    return "*" + " ".join(f"{n[0].upper()}{n[1:]}." for n in notes) + "*"


def _code_or_link(expr: str, linker: Linker) -> str:
    target_link = linker.resolve(expr, None)
    return f"[`{expr}`]({target_link})" if target_link else f"`{expr}`"


def render_member(cls: type, member: Member, linker: Linker) -> list[str]:
    out = [f"#### {member_heading(cls, member)}", ""]
    if member.kind == "alias":
        target = member.func.__name__
        target_link = linker.resolve(f"{cls.__name__}.{target}", None)
        shown = f"[`{cls.__name__}.{target}`]({target_link})" if target_link else f"`{target}`"
        return [*out, "```py", f"{member.name} = {target}", "```", "", f"Another name for {shown}.", ""]
    out += ["```py", function_text(member.func, member.name, member.kind), "```", ""]
    if member.defined_in is not cls:
        out += [f"*Inherited from `{member.defined_in.__name__}`.*", ""]
    out += [markdown(member.doc, linker, cls) if member.doc else "*(undocumented)*", ""]
    return out


def render_function(qualified: str, func: Callable[..., Any], linker: Linker) -> list[str]:
    out = [f"### {qualified}", "", "```py", function_text(func, func.__name__), "```", ""]
    out += [_notes([f"defined in `{source_path(func)}`"]), ""]
    return [*out, markdown(inspect.getdoc(func) or "*(undocumented)*", linker), ""]


def render_constant(qualified: str, value: Any, linker: Linker) -> list[str]:
    name = qualified.rpartition(".")[2]
    module, doc = module_constant_doc(value, name)
    kind = type(value).__name__
    if isinstance(value, frozenset | set | tuple | list) and all(isinstance(v, str) for v in value):
        items = sorted(value) if isinstance(value, frozenset | set) else list(value)
        annotation = f"{kind}[str]"
        shown = f"A `{kind}` of {len(items)} strings" + (" (sorted here)" if isinstance(value, frozenset | set) else "")
        listing = ", ".join(f"`{v}`" for v in items)
        summary_text = f"{shown}: {listing}."
    else:
        annotation, summary_text = kind, f"`{value_text(value)}`"
    path = module.replace(".", "/") + ".py"
    out = [f"### {qualified}", "", "```py", f"{name}: {annotation}", "```", ""]
    out += [_notes([f"defined in `{path}`"]), ""]
    if doc:
        out += [inline(doc, linker, None), ""]
    return [*out, summary_text, ""]


def render() -> str:
    """The whole page."""
    groups = grouped()
    linker = build_linker(groups)
    out = [INTRO, "## Contents", ""]
    for title, _, names in groups:
        out.append(f"- [{title}]({link(title)})")
        for qualified, obj in names:
            doc = inspect.getdoc(obj) if inspect.isclass(obj) or inspect.isfunction(obj) else None
            line = f"  - [`{short(qualified)}`]({link(qualified)})"
            if doc:
                line += f": {summary(doc, linker, obj if inspect.isclass(obj) else None)}"
            out.append(line)
    out.append("")
    for title, intro, names in groups:
        out += [f"## {title}", "", intro, ""]
        for qualified, obj in names:
            if inspect.isclass(obj):
                out += render_class(qualified, obj, linker)
            elif inspect.isfunction(obj):
                out += render_function(qualified, obj, linker)
            else:
                out += render_constant(qualified, obj, linker)
    text = "\n".join(out)
    text = resolve_links(re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n")
    if re.search(r" at 0x[0-9a-f]+", text):
        raise SystemExit("docs/gen_api.py: the page would contain a memory address")
    return text


def main(argv: list[str] | None = None) -> int:
    """``python docs/gen_api.py [--check]``; returns the exit status."""
    parser = argparse.ArgumentParser(description="Write docs/api.md from the docstrings of aqueue.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not up to date")
    args = parser.parse_args(argv)
    page = render()
    name = API_MD.relative_to(ROOT).as_posix() if API_MD.is_relative_to(ROOT) else str(API_MD)
    if not args.check:
        API_MD.write_text(page)
        print(f"wrote {name}")
        return 0
    current = API_MD.read_text() if API_MD.exists() else ""
    if current == page:
        print(f"{name} is up to date")
        return 0
    diff = list(difflib.unified_diff(current.splitlines(), page.splitlines(), name, "generated", lineterm=""))
    shown = "\n".join(diff[:60]) + (f"\n… ({len(diff) - 60} more diff lines)" if len(diff) > 60 else "")
    why = "does not exist" if not API_MD.exists() else "is out of date (the docstrings or the generator changed)"
    print(f"{shown}\n\n{name} {why}: run `python docs/gen_api.py` and commit the result.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
