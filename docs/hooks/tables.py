"""MkDocs hook: reference tables generated from the code at build time.

A page holds a placeholder, the build puts the table in its place:

- ``<!-- infratask:options -->``: every command-line option and ini key the
  plugin registers (name, default, help), from its own ``pytest_addoption``;
- ``<!-- infratask:keys -->``: every frontmatter key the plugin knows;
- ``<!-- infratask:modules -->``: every module of the package by layer, with the
  first sentence of its docstring;
- ``<!-- infratask:include PATH -->``: a Markdown file of the repository (PATH
  relative to its root), its first heading dropped.

So the reference cannot drift from the code: there is no second copy to forget.
"""

from __future__ import annotations

import ast
import html
import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"<!-- infratask:(options|keys|modules|include) ?([^ >]*) ?-->")


# Markdown still reads emphasis, links and escapes inside inline HTML: as entities,
# a regex's ``*``, ``[`` and ``\\`` (and a table cell's ``|``) stay as written.
_LITERAL = str.maketrans({c: f"&#{ord(c)};" for c in "|*[]\\`"})


def _code(value: str) -> str:
    return "<code>" + html.escape(value).translate(_LITERAL) + "</code>"


def _cell(text: str) -> str:
    """Help text as a cell: one line, ``<``/``>`` shown as written outside code spans."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else html.escape(p, quote=False) for i, p in enumerate(parts))


def _default(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "none"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, list | tuple):
        return "<br>".join(_code(str(item)) for item in value)
    return _code(str(value))


def options_table() -> str:
    """Two tables: the command-line options, then the ini keys."""
    from pytest_infratask import compat, plugin

    options, inis = compat.registered_options(plugin.pytest_addoption)
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for flags, metavar, default, help_text in options:
        name = _code(f"{flags} {metavar}".strip())
        shown = "off" if not metavar and not default else _default(default)
        rows.append(f"| {name} | {shown} | {_cell(help_text)} |")
    rows += ["", "| ini key | type | default | what it sets |", "|---|---|---|---|"]
    for name, kind, default, help_text in inis:
        rows.append(f"| {_code(name)} | {kind} | {_default(default)} | {_cell(help_text)} |")
    return "\n".join(rows) + "\n"


def keys_table() -> str:
    from pytest_infratask.core import schema

    return schema.markdown_table()


def _summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    return re.split(r"(?<=\.)\s", paragraph, maxsplit=1)[0]


def modules_table() -> str:
    """The package's modules layer by layer, bottom to top, as the layout test sees them."""
    from pytest_infratask.layout import LAYERS

    package = ROOT / "pytest_infratask"
    placed = {name for layer in LAYERS for name in layer}
    rows = ["| layer | module | what it holds |", "|---|---|---|"]
    glue = sorted({p.stem for p in package.glob("*.py")} - placed - {"__init__"})
    layers = [*LAYERS, tuple(glue)]
    for number, layer in enumerate(layers):
        label = "pytest glue" if number == len(LAYERS) else f"{number}"
        for name in layer:
            folder = package / name
            paths = sorted(folder.glob("*.py")) if folder.is_dir() else [package / f"{name}.py"]
            for path in paths:
                if path.name == "__init__.py":
                    continue
                module = f"{name}/{path.stem}" if folder.is_dir() else name
                rows.append(f"| {label} | `{module}` | {_cell(_summary(path))} |")
    return "\n".join(rows) + "\n"


LINK = re.compile(r"\]\((?!https?:|#|/)([^)#\s]+)")


def include(path: str) -> str:
    """The file at ``path`` without its title, its relative links made relative to
    the docs directory, where the page holding it lives."""
    source = ROOT / path

    def relink(match: re.Match[str]) -> str:
        target = (source.parent / match.group(1)).resolve()
        return "](" + os.path.relpath(target, ROOT / "docs")

    text = source.read_text(encoding="utf-8")
    return LINK.sub(relink, re.sub(r"\A# [^\n]*\n+", "", text))


def render(markdown: str) -> str:
    """``markdown`` with every placeholder replaced by what it names."""

    def replace(match: re.Match[str]) -> str:
        kind, argument = match.groups()
        if kind == "options":
            return options_table()
        if kind == "keys":
            return keys_table()
        if kind == "modules":
            return modules_table()
        return include(argument)

    return PLACEHOLDER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return render(markdown)
