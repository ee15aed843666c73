"""The package's shape: imports point down the layers and never in a circle, functions
and classes stay small, and every deferred import says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_infratask
from pytest_infratask.layout import LAYERS

PACKAGE = Path(pytest_infratask.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the package that ``module`` imports: at the top, inside functions,
    and under ``if TYPE_CHECKING`` (a type names a dependency as much as a call does)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                for alias in node.names:
                    name = f"{base}.{alias.name}"
                    target = name if name in known else base
                    if target in known:
                        found.add(target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    found.discard(module)
    return found


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    known = _modules(root)
    graph = {m: _imported(m, p, known) for m, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_package_has_no_import_cycles() -> None:
    assert import_cycles(PACKAGE) == []


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
        "def f():\n    from ..c import g\n"
    )
    (package / "c.py").write_text("def g():\n    from . import a\n")
    assert import_cycles(package) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (package / "c.py").write_text("def g():\n    pass\n")
    assert import_cycles(package) == []


def test_a_cycle_through_a_type_only_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
    )
    assert import_cycles(package) == [["pkg.a", "pkg.b"]]


def _deferred_imports(path: Path) -> list[tuple[int, str, bool]]:
    """Imports inside functions, and whether a comment covers each: on its own line,
    on the line above, or above the run of imports it belongs to. The reason is said
    once per module imported: a later deferred import of a module whose first one
    said why needs no comment of its own."""
    lines = path.read_text(encoding="utf-8").splitlines()

    def said(number: int) -> bool:
        above = lines[number - 2].strip() if number > 1 else ""
        if "#" in lines[number - 1] or above.startswith("#"):
            return True
        return above.startswith(("from ", "import ")) and said(number - 1)

    found, explained = [], set()
    nodes = [
        node
        for func in ast.walk(ast.parse("\n".join(lines)))
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    for node in sorted(set(nodes), key=lambda n: n.lineno):
        module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        covered = said(node.lineno) or module in explained
        if covered:
            explained.add(module)
        found.append((node.lineno, lines[node.lineno - 1].strip(), covered))
    return found


def test_a_deferred_import_says_why_once_per_module(tmp_path: Path) -> None:
    body = "def a():\n    import json{}\n\n\ndef b():\n    import json\n    import csv\n"
    silent = tmp_path / "silent.py"
    silent.write_text(body.format(""))
    assert [said for _, _, said in _deferred_imports(silent)] == [False, False, False]
    once = tmp_path / "once.py"
    once.write_text(body.format("  # optional: only for reports"))
    assert [said for _, _, said in _deferred_imports(once)] == [True, True, False]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_every_deferred_import_says_why(path: Path) -> None:
    """Imports inside functions exist for start-up cost or optional packages; each
    carries its reason (on its line or the line above), so the next reader knows
    whether it may move to the top."""
    silent = [f"{path.name}:{n}: {text}" for n, text, said in _deferred_imports(path) if not said]
    assert silent == []


# ---------------------------------------------------------------- direction


ALLOWED_UPWARD: set[tuple[str, str]] = set()
"""Upward imports tolerated for now, each with its reason; none are."""


def _rank(module: str, root: str) -> int:
    top = module.removeprefix(root + ".").split(".")[0]
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    return len(LAYERS)


def upward_imports(root: Path) -> list[str]:
    """``module -> module`` for every import of a higher layer from a lower one, whether
    it runs at import, inside a function, or only for the type checker. The package
    itself is not a layer: Python loads it before any module in it."""
    known = _modules(root)
    name = root.name
    found = []
    for module, path in sorted(known.items()):
        for target in sorted(_imported(module, path, known)):
            if target == name or (module, target) in ALLOWED_UPWARD:
                continue
            if _rank(target, name) > _rank(module, name):
                found.append(f"{module} -> {target}")
    return found


def test_imports_point_down_the_layers() -> None:
    found = upward_imports(PACKAGE)
    assert not found, "imports of a higher layer:\n" + "\n".join(found)


def test_the_allowed_upward_imports_still_exist() -> None:
    """An entry that no longer matches an import is stale: it would let the import back."""
    known = _modules(PACKAGE)
    present = {(m, t) for m, p in known.items() for t in _imported(m, p, known)}
    assert sorted(ALLOWED_UPWARD - present) == []


def test_an_upward_import_is_found_wherever_it_hides(tmp_path: Path) -> None:
    package = tmp_path / "pytest_infratask"
    for sub in ("core", "run", "report"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("from pytest_infratask.core import x\n")
    (package / "core" / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pytest_infratask.run import y\n"
    )
    (package / "run" / "y.py").write_text("def f():\n    from ..report import z\n")
    (package / "report" / "z.py").write_text("from pytest_infratask import plugin\n")
    assert upward_imports(package) == [
        "pytest_infratask.core.x -> pytest_infratask.run.y",
        "pytest_infratask.report.z -> pytest_infratask.plugin",
        "pytest_infratask.run.y -> pytest_infratask.report.z",
    ]


# ---------------------------------------------------------------- size

MAX_FUNCTION = 60
MAX_CLASS = 200
LONG_TABLES = {
    # one `parser.addini`/`addoption` call per setting: a table of the command line and
    # ini options with their help texts, read top to bottom, no logic to split out
    "options.py:addoptions",
}


def _sizes(path: Path) -> list[tuple[str, int, int]]:
    """Each function and class of a module: ``file:name``, its lines, its limit."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit = MAX_FUNCTION
        elif isinstance(node, ast.ClassDef):
            limit = MAX_CLASS
        else:
            continue
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        found.append((f"{path.relative_to(PACKAGE).as_posix()}:{node.name}", lines, limit))
    return found


SIZES = [size for path in sorted(PACKAGE.rglob("*.py")) for size in _sizes(path)]


def test_functions_and_classes_stay_small() -> None:
    """Functions up to 60 lines, classes up to 200: one thing each, read in one go."""
    found = [
        f"{where} is {lines} lines (at most {limit})"
        for where, lines, limit in SIZES
        if lines > limit and where not in LONG_TABLES
    ]
    assert not found, "\n".join(found)


def test_the_exceptions_are_still_needed() -> None:
    """An entry for a function or class that is gone, or now small, is stale."""
    over = {where for where, lines, limit in SIZES if lines > limit}
    assert sorted(LONG_TABLES - over) == []


# ---------------------------------------------------------------- Any

ANY_ALLOWED = {
    # module: the third-party object that has no usable type there
    "clients/cluster.py": "kubernetes objects as JSON (Obj) and the client's untyped calls",
    "clients/kubeconfig.py": "a user's kubeconfig YAML, any shape",
    "clients/security.py": "manifest YAML, any shape",
    "compat.py": "xdist's scheduler and worker dicts (untyped); pytest's last-failed keys",
    "handlers/verification.py": "health checks as the task's YAML frontmatter gives them",
    "items.py": "pytest.Function's constructor keywords, passed through from_parent",
    "read/taskfile.py": "mistletoe tokens and PyYAML events (untyped)",
    "record/native.py": "pygit2 objects, whose stubs reject calls libgit2 takes",
    "reporting.py": "pytest-json-report's report dict (untyped)",
}


def _names_any(node: ast.AST | None) -> bool:
    return node is not None and any(
        (isinstance(n, ast.Name) and n.id == "Any")
        or (isinstance(n, ast.Attribute) and n.attr == "Any")
        or (isinstance(n, ast.Constant) and isinstance(n.value, str) and "Any" in n.value)
        for n in ast.walk(node)
    )


def _is_record(node: ast.ClassDef) -> bool:
    """A dataclass, TypedDict, NamedTuple or Protocol: its fields are its signature."""
    marks = [ast.unparse(d) for d in node.decorator_list] + [ast.unparse(b) for b in node.bases]
    return any(
        m.split(".")[-1].split("(")[0] in ("dataclass", "TypedDict", "NamedTuple", "Protocol")
        for m in marks
    )


def any_uses(source: str) -> list[str]:
    """Where a module's signatures say ``Any``: a function's arguments or return, a
    record's fields, a module-level alias."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            found += [f"{node.name}({x.arg})" for x in args if x and _names_any(x.annotation)]
            found += [f"{node.name} ->"] if _names_any(node.returns) else []
        elif isinstance(node, ast.ClassDef) and _is_record(node):
            found += [
                f"{node.name}.{ast.unparse(s.target)}"
                for s in node.body
                if isinstance(s, ast.AnnAssign) and _names_any(s.annotation)
            ]
    for s in tree.body:
        if isinstance(s, ast.Assign) and _names_any(s.value):
            found.append(f"{ast.unparse(s.targets[0])} =")
        elif isinstance(s, ast.AnnAssign) and (_names_any(s.value) or _names_any(s.annotation)):
            found.append(f"{ast.unparse(s.target)} =")
    return found


ANY_USES = {
    path.relative_to(PACKAGE).as_posix(): uses
    for path in sorted(PACKAGE.rglob("*.py"))
    if (uses := any_uses(path.read_text(encoding="utf-8")))
}


def test_any_only_where_a_third_party_type_forces_it() -> None:
    """Our own code decides its types: ``Any`` in a signature hides a mistake mypy would
    have caught. It stays only beside an untyped third-party object."""
    found = [
        f"{module}: {', '.join(uses)}"
        for module, uses in ANY_USES.items()
        if module not in ANY_ALLOWED
    ]
    assert not found, "\n".join(found)


def test_each_module_allowed_any_still_uses_it() -> None:
    assert sorted(set(ANY_ALLOWED) - set(ANY_USES)) == []


def test_any_is_found_in_every_place_a_signature_has() -> None:
    source = (
        "from typing import Any, TypedDict\nimport typing\n"
        "from dataclasses import dataclass\n"
        "Alias = dict[str, Any]\n"
        "def f(a: int, *b: Any, c: 'list[Any]', **d: int) -> typing.Any: ...\n"
        "@dataclass(frozen=True)\nclass D:\n    x: Any\n    y: int\n"
        "class T(TypedDict):\n    z: list[Any]\n"
        "class Plain:\n    w: Any\n"
        "def g(a: object) -> None:\n    local: Any = a\n"
    )
    assert sorted(any_uses(source)) == sorted(["Alias =", "f(b)", "f(c)", "f ->", "D.x", "T.z"])
