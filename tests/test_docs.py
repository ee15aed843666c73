"""The documentation: a short README, a site that builds strictly, reference tables
generated from the code, and links that lead somewhere."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest

from pytest_infratask.core.schema import KNOWN_KEYS
from pytest_infratask.core.settings import DEFAULT_PROTECTED

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _tables() -> ModuleType:
    """The MkDocs hook, loaded from its file as MkDocs loads it."""
    spec = importlib.util.spec_from_file_location("docs_tables", DOCS / "hooks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(path: Path) -> list[str]:
    """The lines of ``path`` outside fenced code, where links are links."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """A heading's anchor as MkDocs (Python-Markdown's toc) makes it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _prose(path) if re.match(r"#{1,6} ", line)}


def test_the_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_readme_gives_the_two_commands_the_makefile_has() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "docs"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M), f"no `{target}` target in Makefile"


def test_every_option_and_ini_key_pytest_shows_is_in_the_options_table(
    pytester: pytest.Pytester,
) -> None:
    """Read from ``pytest --help``, not from the function the table is made with."""
    shown = pytester.runpytest("--help").stdout.str()
    options = set(re.findall(r"^\s+(--infratask-[\w-]+)", shown, re.M))
    inis = set(re.findall(r"^\s+(infratask_\w+) \(", shown, re.M))
    assert len(options) > 10 and len(inis) > 20, shown
    table = _tables().options_table()
    missing = [n for n in sorted(options | inis) if f"<code>{n}" not in table]
    assert not missing, f"not in the generated options table: {missing}"


def test_the_options_table_gives_registered_defaults() -> None:
    table = _tables().options_table()
    row = next(line for line in table.splitlines() if "<code>infratask_timeout</code>" in line)
    assert "<code>600</code>" in row and "seconds per criterion" in row
    row = next(line for line in table.splitlines() if "<code>infratask_files</code>" in line)
    assert "<code>TASK-*.md</code><br><code>task-*.md</code>" in html.unescape(row)


def test_every_frontmatter_key_is_in_the_keys_table() -> None:
    rows = [line.split("|") for line in _tables().keys_table().splitlines()]
    listed = {row[1].strip().strip("`") for row in rows if len(row) > 2}
    missing = sorted(KNOWN_KEYS - listed)
    assert not missing, f"not in the generated keys table: {missing}"


@pytest.mark.parametrize(
    ("page", "placeholder"),
    [("configuration.md", "options"), ("frontmatter.md", "keys"), ("architecture.md", "modules")],
)
def test_the_reference_pages_are_generated(page: str, placeholder: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert f"<!-- infratask:{placeholder} -->" in text
    rendered = _tables().render(text)
    assert "<!-- infratask:" not in rendered and rendered.count("\n|") > 20


def test_the_architecture_table_lists_every_module_once() -> None:
    package = ROOT / "pytest_infratask"
    modules = {
        str(p.relative_to(package).with_suffix(""))
        for p in package.rglob("*.py")
        if p.name != "__init__.py"
    }
    rows = [line.split("|") for line in _tables().modules_table().splitlines()[2:]]
    listed = [row[2].strip().strip("`") for row in rows]
    assert sorted(listed) == sorted(modules)
    assert all(row[3].strip() for row in rows), "a module without a docstring"


def test_an_included_file_keeps_its_links_working() -> None:
    """The home page is the README: its ``docs/x.md`` links must become ``x.md``."""
    home = _tables().render((DOCS / "index.md").read_text(encoding="utf-8"))
    assert "](running.md#opting-in)" in home and "](docs/" not in home


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for line in _prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: {broken}"


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """Also: a default is shown as written, even a regex full of Markdown's own signs."""
    pytest.importorskip("mkdocs", reason="the docs tools are missing: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert not (ROOT / "site").exists()
    configuration = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "infratask_writable" in configuration and "infratask:options" not in configuration
    row = configuration[configuration.index("<td><code>infratask_protected</code>") :]
    shown = re.findall(r"<code>(.*?)</code>", row[: row.index("</tr>")])[1:]
    assert [html.unescape(regex) for regex in shown] == list(DEFAULT_PROTECTED)
    assert 'class="mermaid"' in (site / "architecture" / "index.html").read_text(encoding="utf-8")
