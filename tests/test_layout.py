"""The package's shape: no import cycles, and every deferred import says why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_infratask

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
    """Modules of the package that ``module`` imports when it runs: at the top or inside
    functions, not under ``if TYPE_CHECKING`` (which never runs)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
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


def _deferred_imports(path: Path) -> list[tuple[int, str, bool]]:
    """Imports inside functions, and whether a comment covers each: on its own line,
    on the line above, or above the run of imports it belongs to."""
    lines = path.read_text(encoding="utf-8").splitlines()

    def said(number: int) -> bool:
        above = lines[number - 2].strip() if number > 1 else ""
        if "#" in lines[number - 1] or above.startswith("#"):
            return True
        return above.startswith(("from ", "import ")) and said(number - 1)

    found = []
    for func in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append((node.lineno, lines[node.lineno - 1].strip(), said(node.lineno)))
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_every_deferred_import_says_why(path: Path) -> None:
    """Imports inside functions exist for start-up cost or optional packages; each
    carries its reason (on its line or the line above), so the next reader knows
    whether it may move to the top."""
    silent = [f"{path.name}:{n}: {text}" for n, text, said in _deferred_imports(path) if not said]
    assert silent == []
