"""Read a task file into the model: frontmatter by python-frontmatter, body by outline.

The body's outline comes from the one-pass scanner, or from mistletoe for
files that use more Markdown than the scanner reads.

Line numbers are kept exact (the frontmatter is blanked, not cut, before the
body is parsed) because write-back and error messages both point at lines.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

from pytest_infratask.core.schema import (
    DEPENDENCIES,
    ID,
    LABELS,
    PRIORITY,
    STATUS,
    TITLE,
    DependencyTextWarning,
    DetachedBlockWarning,
    NearMissCheckboxWarning,
    Notice,
)
from pytest_infratask.core.schema import RETRIES as RETRIES_KEY
from pytest_infratask.core.schema import problem as schema_problem
from pytest_infratask.core.task import CodeBlock, Criterion, Layout, Task
from pytest_infratask.read.backlog import DEFAULT_PREFIX, id_key, is_task_id, resolve, tree_of
from pytest_infratask.read.outline import Outline, fast_outline

Token = Any
"""A mistletoe token: its attributes are untyped."""
YamlEvent = Any
"""A PyYAML parse event: PyYAML ships no types."""

FRONTMATTER_FENCE = re.compile(r"^---[ \t]*$")
FRONTMATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")
CHECKBOX = re.compile(
    r"^(?P<indent>[ \t]*)(?P<marker>[-*+]|\d{1,9}[.)])(?P<space>[ \t]+)"
    r"\[(?P<box>[^\]\r\n])\](?P<rest>(?:[ \t].*)?)$"
)
BACKLOG_NUMBER = re.compile(r"^#(\d+)\s+")
INDEPENDENT = re.compile(r"<!--\s*independent\s*-->", re.I)
SERVICE = re.compile(r"<!--\s*service\s*-->", re.I)
NEEDS = re.compile(r"<!--\s*needs\s*:?\s*([^>]*?)\s*-->", re.I)
RETRIES = re.compile(r"<!--\s*retries\s*:?\s*(.*?)\s*-->", re.I)
MARKERS = (INDEPENDENT, SERVICE, NEEDS, RETRIES)


def _without_markers(text: str) -> str:
    """A criterion's text as a person reads it: the HTML-comment markers taken out."""
    for marker in MARKERS:
        text = marker.sub("", text)
    return text.strip()


TASK_ID = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*-\d+(?:\.\d+)*)\b")
AC_BEGIN = re.compile(r"^\s*<!--\s*AC:BEGIN\s*-->\s*$")
AC_END = re.compile(r"^\s*<!--\s*AC:END\s*-->\s*$")
NEAR_MISS = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])?\s*\[\s*[xX]?\s*\]")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
FIRST_WORD = re.compile(r"[`\[*_]*([^\s`\[\]()*_,;:]+)")
BOM = "\ufeff"
DEEP = "the Markdown is nested too deeply to read (lists or quotes more than 32 levels deep)"
_OTHER_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines splits there too


class TaskFileError(Exception):
    """A task file that cannot be read; reported as a collection error."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


def decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TaskFileError(path, line, f"not valid UTF-8 ({exc.reason})") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise TaskFileError(path, line, "contains a NUL byte; a task file is text")
    if "\r" in text and "\n" not in text:
        raise TaskFileError(
            path,
            1,
            "lines end in CR only (classic Mac line endings), which no Markdown tool reads "
            "as lines; convert the file to LF or CRLF",
        )
    return text[1:] if text.startswith(BOM) else text


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split at ``\n`` only.

    ``str.splitlines`` also splits at form feeds, ``\x1c``-``\x1e``, ``\x85`` and
    U+2028, which Markdown treats as text: line numbers would drift from the
    parser's and a line holding one could never be found again to tick.
    """
    if text.count("\r") == text.count("\r\n") and not any(c in text for c in _OTHER_BREAKS):
        return text.splitlines(keepends=True)  # the same lines, three times faster
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def strip_ending(line: str) -> str:
    """The line without its ending (``\n`` or ``\r\n``); any other ``\r`` is text."""
    return line.removesuffix("\n").removesuffix("\r") if line.endswith("\n") else line


def read_task(path: Path) -> Task:
    with path.open("rb") as handle:
        before = os.fstat(handle.fileno())
        data = handle.read()
        after = os.fstat(handle.fileno())
    stamp = file_stamp(after) if file_stamp(before) == file_stamp(after) else None
    return parse_task(path, data, stamp)


def newline_of(text: str) -> str:
    """The line ending new lines get: the file's own."""
    if "\r\n" in text:
        return "\r\n"
    return "\r" if "\r" in text and "\n" not in text else "\n"


def file_stamp(info: os.stat_result) -> tuple[int, int, int]:
    """What identifies one version of a file: a write-back or an edit changes it."""
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def parse_task(path: Path, data: bytes, stamp: tuple[int, int, int] | None = None) -> Task:
    text = decode(path, data)
    raw = split_lines(text)
    lines = [strip_ending(line) for line in raw]
    newline = newline_of(text)
    meta, body_start = _frontmatter(path, lines)
    body = [""] * body_start + lines[body_start:]
    return _build(path, meta, body, newline, raw, stamp)


def frontmatter_end(lines: list[str]) -> int | None:
    """Index of the line closing the frontmatter; None when there is none (or it is
    never closed)."""
    if not lines or not FRONTMATTER_FENCE.match(lines[0]):
        return None
    return next((i for i in range(1, len(lines)) if FRONTMATTER_END.match(lines[i])), None)


def body_of(lines: list[str]) -> list[str]:
    """``lines`` (without endings) with the frontmatter blanked, not cut, so line
    numbers stay those of the file."""
    end = frontmatter_end(lines)
    return lines if end is None else [""] * (end + 1) + lines[end + 1 :]


def _frontmatter(path: Path, lines: list[str]) -> tuple[dict[str, object], int]:
    if not lines or not FRONTMATTER_FENCE.match(lines[0]):
        return {}, 0
    end = frontmatter_end(lines)
    if end is None:
        raise TaskFileError(path, 1, "frontmatter opened with '---' is never closed")
    import yaml  # only a file with frontmatter needs YAML
    from frontmatter.default_handlers import YAMLHandler

    text = "\n".join(backlog_quoted(lines[1:end]))
    try:
        bounded(text)
        meta = YAMLHandler().load(text)
    except YAMLLimit as exc:
        raise TaskFileError(path, exc.line + 2, f"invalid YAML frontmatter: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = (mark.line + 2) if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TaskFileError(path, line, f"invalid YAML frontmatter: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors raise plain errors for values such as 2024-02-31
        raise TaskFileError(path, 2, f"invalid YAML frontmatter: {exc}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise TaskFileError(path, 2, "frontmatter must be a YAML mapping")
    meta = {str(k): v for k, v in meta.items()}
    problem = unusable_number(meta) or schema_problem(meta)
    if problem:
        raise TaskFileError(path, key_lines(lines).get(problem[0], 2), problem[1])
    return meta, end + 1


def _retries(path: Path, line: int, value: str) -> int:
    """A criterion's ``<!-- retries: N -->``, bounded as the frontmatter key is."""
    number = RETRIES_KEY.read(value) if re.fullmatch(r"[0-9]{1,3}", value) else None
    if number is not None:
        return number
    raise TaskFileError(
        path,
        line,
        f"<!-- retries: {value[:40]} -->: expected a whole number "
        f"from {RETRIES_KEY.minimum:.0f} to {RETRIES_KEY.maximum:.0f}",
    )


# Backlog.md quotes these before parsing (``assignee: @someone`` is not YAML: ``@`` is
# reserved), so a file Backlog.md reads is read here too.
_BACKLOG_PERSON = re.compile(r"^(\s*(?:assignee|reporter):\s*)(.*)$")
_BACKLOG_DUE = re.compile(r"^(\s*due_date:\s*)(.*?)(\s+#.*)?$")


def _yaml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def backlog_quoted(lines: list[str]) -> list[str]:
    """Frontmatter lines as Backlog.md rewrites them before parsing: ``assignee`` and
    ``reporter`` values (and ``@`` entries of their flow lists) and ``due_date`` quoted."""
    out = []
    for line in lines:
        due = _BACKLOG_DUE.match(line)
        if due:
            value = due[2].strip()
            if value and value.lower() not in ("null", "~") and value[0] not in "'\"":
                line = due[1] + _yaml_string(value) + (due[3] or "")
        person = _BACKLOG_PERSON.match(line)
        if person:
            value = person[2].strip()
            flow = re.match(r"^\[(.*)\]\s*(#.*)?$", value)
            if flow:
                items = [e.strip() for e in flow[1].split(",") if e.strip()]
                items = [_yaml_string(e) if e.startswith("@") else e for e in items]
                line = f"{person[1]}[{', '.join(items)}]" + (f" {flow[2]}" if flow[2] else "")
            elif value and value[0] not in "['\"-":
                line = person[1] + _yaml_string(value)
        out.append(line)
    return out


MAX_YAML_DEPTH = 32


class YAMLLimit(Exception):
    """Frontmatter refused before it is built: aliases or deep nesting."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def bounded(text: str) -> None:
    """Refuse anchors/aliases (an alias bomb costs gigabytes) and nesting deeper than
    ``MAX_YAML_DEPTH``, reading the event stream only: it costs time and memory in
    proportion to the text, before anything is built from it."""
    plain = "&" not in text and "*" not in text and text.count("[") + text.count("{") < 16
    if plain and max((len(s) - len(s.lstrip(" ")) for s in text.splitlines()), default=0) < 32:
        return  # no anchor, no alias, shallow: the common case costs nothing
    import yaml  # only a file with anchors needs YAML's events

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _bounded_events(yaml.parse(text, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        # libyaml 0.2.5+ has a depth limit of its own, met while it scans ahead.
        if "nesting depth" not in str(exc.problem):
            raise
        line = exc.problem_mark.line if exc.problem_mark else 0
        raise YAMLLimit(line, f"nested more than {MAX_YAML_DEPTH} levels deep") from None


def _bounded_events(events: Iterable[YamlEvent]) -> None:
    import yaml  # only a file with anchors needs YAML's events

    depth = 0
    for event in events:
        line = event.start_mark.line if event.start_mark else 0
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YAMLLimit(line, "YAML anchors and aliases (& and *) are not accepted here")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YAMLLimit(line, f"nested more than {MAX_YAML_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


MAX_NUMBER = 10**15


def unusable_number(value: object, key: str = "") -> tuple[str, str] | None:
    """The first infinite, NaN or absurdly large number, as (top-level key, message)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return key, f"{key}: {value} is not a usable number"
    if isinstance(value, int | float) and abs(value) > MAX_NUMBER:
        return key, f"{key}: {value:.3g} is too large to be meant"
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list):
        items = ((key, v) for v in value)
    else:
        return None
    for k, v in items:
        found = unusable_number(v, key or str(k))
        if found:
            return found
    return None


def no_criteria_reason(path: Path) -> tuple[int, str]:
    """Why a task file gives no criterion, at the line that shows it."""
    body = body_of([strip_ending(line) for line in split_lines(decode(path, path.read_bytes()))])
    span = _criteria_span(body, task_sections(body))
    if span is None:
        return 1, (
            "no item from this file: it has no '## Acceptance Criteria' section (nor a "
            "<!-- AC:BEGIN --> block), and no criterion is read anywhere else"
        )
    return span[0], (
        "no item from this file: its acceptance criteria (from this line) hold no "
        "'- [ ] text' checklist item at the margin"
    )


def task_sections(body: list[str]) -> _Sections:
    return _Sections(outline_of(body).headings, len(body))


def log_insertion(raw: list[str], span: tuple[int, int] | None, starts: list[int]) -> int | None:
    """Where new progress entries go: after the section's last non-blank line (after
    the blank line that follows a bare heading). None when there is no section."""
    if span is None:
        return None
    heading_at = span[0] - 1
    last = heading_at
    for i in range(heading_at + 1, span[1] - 1):
        if raw[i].strip():
            last = i
    if last == heading_at and last + 1 < len(raw) and not raw[last + 1].strip():
        last += 1  # keep the blank line that follows the heading
    return starts[last + 1]


class _Sections:
    """Heading spans of the body, so each section can be looked up by name."""

    def __init__(self, headings: list[tuple[int, int, str]], last_line: int) -> None:
        self.headings = headings
        self.spans: dict[str, tuple[int, int]] = {}
        for i, (line, level, title) in enumerate(headings):
            end = next((h[0] for h in headings[i + 1 :] if h[1] <= level), last_line + 1)
            self.spans.setdefault(title.strip().strip(":").lower(), (line, end))

    def span(self, name: str) -> tuple[int, int] | None:
        return self.spans.get(name)

    def title(self) -> str | None:
        return next((t for _, level, t in self.headings if level == 1), None)


def outline_of(body: list[str]) -> Outline:
    """The scanner's outline where the body stays within its subset, else mistletoe's
    (after a linear check of the nesting: both parsers' cost grows steeply with it)."""
    too_deep = nested_beyond(body, MAX_NESTING)
    if too_deep is not None:
        raise NestingTooDeep(too_deep)
    return fast_outline(body) or mistletoe_outline(body)


MAX_NESTING = 32
_PREFIX = " \t>-*+0123456789.)"


@functools.cache
def _long_prefix(limit: int) -> re.Pattern[str]:
    return re.compile(rf"^[{re.escape(_PREFIX)}]{{{limit + 1}}}", re.M)


_CONTAINER = re.compile(r"[ \t]*(?:>|(?:[-*+]|\d{1,9}[.)])(?=[ \t]|$))")


class NestingTooDeep(RecursionError):
    def __init__(self, line: int) -> None:
        super().__init__(DEEP)
        self.line = line


def nested_beyond(body: list[str], limit: int) -> int | None:
    """The first line (1-based) whose lists and quotes nest deeper than ``limit``, by
    an upper bound: markers opening the line plus the list items it sits inside."""
    if _long_prefix(limit).search("\n".join(body)) is None:
        return None  # deep nesting needs a long prefix of indentation and markers
    stack: list[int] = []
    for number, line in enumerate(body, start=1):
        pos = markers = 0
        while (match := _CONTAINER.match(line, pos)) is not None and match.end() > pos:
            pos = match.end()
            markers += 1
            if markers > limit:
                return number
        if not markers:
            continue
        indent = len(line) - len(line.lstrip(" \t"))
        while stack and stack[-1] >= indent:
            stack.pop()
        stack.append(indent)
        if len(stack) - 1 + markers > limit:
            return number
    return None


def mistletoe_outline(body: list[str]) -> Outline:
    # mistletoe only for the outlines the fast scanner steps aside for
    from mistletoe.block_token import Document, Heading, List, SetextHeading

    doc: Token = Document([line + "\n" for line in body])
    outline = Outline()
    for block in doc.children:
        token: Token = block
        if isinstance(block, Heading | SetextHeading):
            outline.headings.append((token.line_number, token.level, _plain(token)))
        elif isinstance(block, List):
            outline.items.extend((item.line_number, _fences(item)) for item in token.children)
    outline.fences = _fences(doc)
    return outline


def _plain(token: Token) -> str:
    # Only a token's own ``content``: mistletoe keeps the last heading's text on the
    # Heading class, so an empty heading would otherwise read as another one's.
    if "content" in vars(token) and not getattr(token, "children", None):
        return str(token.content)
    return "".join(_plain(c) for c in (token.children or ()))


def _walk(token: Token) -> Iterator[Token]:
    for child in token.children or ():
        yield child
        yield from _walk(child)


def _build(
    path: Path,
    meta: dict[str, object],
    body: list[str],
    newline: str,
    raw: list[str],
    stamp: tuple[int, int, int] | None,
) -> Task:
    try:
        outline = outline_of(body)
    except RecursionError as exc:
        raise TaskFileError(path, getattr(exc, "line", 1), DEEP) from None
    sections = _Sections(outline.headings, len(body))
    starts = list(accumulate(map(len, raw), initial=0))

    def inside(line: int, span: tuple[int, int] | None) -> bool:
        return span is not None and span[0] < line < span[1]

    ac_span = _criteria_span(body, sections)
    found: list[tuple[int, re.Match[str], list[CodeBlock]]] = []
    for line, fences in outline.items:
        if inside(line, ac_span) and (match := CHECKBOX.match(body[line - 1])) is not None:
            found.append((line, match, fences))

    criteria = _criteria(path, body, found, starts)
    notices = [
        *_detached_blocks(outline, criteria, ac_span),
        *_near_misses(body, outline, sections, ac_span),
    ]
    verification_span = sections.span("verification")
    verification = tuple(b for b in outline.fences if inside(b.line, verification_span))
    deps = _dependencies(path, meta, body, sections.span("dependencies"), notices)
    log_span = sections.span("progress log")
    log = tuple(
        text.strip()[2:]
        for text in (body[log_span[0] : log_span[1] - 1] if log_span else [])
        if text.strip().startswith("- ")
    )
    title = TITLE.value(meta) or sections.title() or path.stem
    return Task(
        path=path,
        id=(ID.value(meta) or path.name.removesuffix(".md")).strip(),
        title=str(title).strip(),
        priority=(PRIORITY.value(meta) or "medium").lower(),
        labels=LABELS.value(meta),
        status=STATUS.value(meta) or "",
        dependencies=deps,
        criteria=tuple(criteria),
        meta=meta,
        verification=verification,
        progress_log=log,
        newline=newline,
        layout=(
            None
            if stamp is None
            else Layout(stamp, log_insertion(raw, log_span, starts), starts[-1], newline)
        ),
        key_lines=key_lines(raw),
        notices=tuple(sorted(notices, key=lambda n: n.line)),
    )


def _criteria_span(body: list[str], sections: _Sections) -> tuple[int, int] | None:
    """Where the criteria are: Backlog.md's ``<!-- AC:BEGIN -->`` block wherever the
    file has one (an "Acceptance Criteria" heading elsewhere, such as inside the
    description, is text then), else the first Acceptance Criteria section."""
    begin = next((i for i, text in enumerate(body, start=1) if AC_BEGIN.match(text)), None)
    if begin is None:
        return sections.span("acceptance criteria")
    end = next((i for i in range(begin + 1, len(body) + 1) if AC_END.match(body[i - 1])), None)
    return begin, len(body) + 1 if end is None else end


def _fenced_lines(outline: Outline) -> set[int]:
    """Lines inside code fences (the opening line through the closing one)."""
    lines: set[int] = set()
    for block in outline.fences:
        lines.update(range(block.line, block.line + block.script.count("\n") + 2))
    return lines


def _detached_blocks(
    outline: Outline, criteria: list[Criterion], span: tuple[int, int] | None
) -> Iterator[Notice]:
    """A fence right after a criterion, at the margin: Markdown ends the list item
    before it, so the criterion has no command and would stay manual."""
    if span is None or not criteria:
        return
    owned = {block.line for _, blocks in outline.items for block in blocks}
    starts = [line for line, _ in outline.items]
    headings = outline.headings
    for block in outline.fences:
        if block.line in owned or not block.is_command or not span[0] < block.line < span[1]:
            continue
        before = [line for line in starts if line < block.line]
        owner = next((c for c in criteria if before and c.line == before[-1]), None)
        if owner is not None and any(owner.line < h < block.line for h, _, _ in headings):
            continue  # a heading of its own in between: the block is not the item's
        if owner is not None and owner.open and not owner.commands:
            yield Notice(
                block.line,
                f"the code block on line {block.line} follows criterion #{owner.number} "
                f"(line {owner.line}) but is not indented under it, so #{owner.number} has "
                "no command and is manual; indent the fence to the item's text "
                "(as far as the text after '- ')",
                DetachedBlockWarning,
            )


def _near_misses(
    body: list[str], outline: Outline, sections: _Sections, span: tuple[int, int] | None
) -> Iterator[Notice]:
    """Lines that look like criteria and are not: a malformed box among the criteria,
    or a checklist under a "Checklist" heading."""
    fenced = _fenced_lines(outline)
    if span is not None:
        for line in range(span[0] + 1, span[1]):
            text = body[line - 1]
            if line in fenced or CHECKBOX.match(text) or not NEAR_MISS.match(text):
                continue
            yield Notice(
                line,
                f"{text.strip()[:60]!r} is not a checklist item, so it is no criterion; "
                "write '- [ ] text' (a dash, a space, a box holding one space or x, a space)",
                NearMissCheckboxWarning,
            )
    checklist = sections.span("checklist")
    if checklist is None or (span is not None and span[0] <= checklist[0] < span[1]):
        return
    for line in range(checklist[0] + 1, checklist[1]):
        if line not in fenced and CHECKBOX.match(body[line - 1]):
            yield Notice(
                line,
                "a checklist item under 'Checklist' is no criterion: only the items under "
                "'## Acceptance Criteria' run; move it there (or rename the heading)",
                NearMissCheckboxWarning,
            )


def _dependencies(
    path: Path,
    meta: dict[str, object],
    body: list[str],
    span: tuple[int, int] | None,
    notices: list[Notice],
) -> tuple[str, ...]:
    """The frontmatter's ``dependencies`` and the ids under ``## Dependencies``, each
    once, a bare number given the prefix of the file's Backlog.md tree."""
    tree = tree_of(path)
    prefix = tree.prefix if tree else DEFAULT_PREFIX
    deps = [resolve(d, prefix) for d in DEPENDENCIES.value(meta)]
    _section_dependencies(body, span, prefix, deps, notices)
    return tuple(_unique(deps))


def _section_dependencies(
    body: list[str],
    span: tuple[int, int] | None,
    prefix: str,
    deps: list[str],
    notices: list[Notice],
) -> None:
    """The ids listed under ``## Dependencies``: a list item whose first word is a task
    id is one; a list item of prose, or ids inside a paragraph, are warned about."""
    if span is None:
        return
    for line in range(span[0] + 1, span[1]):
        text = body[line - 1].strip()
        item = LIST_ITEM.match(text)
        if item is None:
            if TASK_ID.search(text) and not text.startswith(("<!--", "#")):
                notices.append(
                    Notice(
                        line,
                        f"{text[:60]!r} under 'Dependencies' is prose, not a list of ids: "
                        "nothing waits for the ids in it; list each as '- task-2'",
                        DependencyTextWarning,
                    )
                )
            continue
        ids = _leading_ids(item[1])
        if ids:
            deps.extend(resolve(task_id, prefix) for task_id in ids)
            continue
        notices.append(
            Notice(
                line,
                f"{item[1][:60]!r} under 'Dependencies' is not a task id, so nothing waits "
                "for it; start the item with the id ('- task-2 ...') or move the text out",
                DependencyTextWarning,
            )
        )


def _leading_ids(text: str) -> list[str]:
    """The task ids an item starts with: ``task-2``, ``task-2, task-3 and 4``,
    ``[task-2](task-2.md) the certificate``; none when it starts with prose."""
    ids = []
    for word in re.split(r"[\s,;]+", text):
        found = FIRST_WORD.match(word)
        if found and is_task_id(found[1]):
            ids.append(found[1])
        elif word.lower() not in ("", "and", "&"):
            break
    return ids


def _unique(ids: Iterable[str]) -> list[str]:
    """Each id once, as first written, however its spellings differ."""
    seen: dict[str, str] = {}
    for task_id in ids:
        seen.setdefault(id_key(task_id), task_id)
    return list(seen.values())


_KEY_LINE = re.compile(r"^([^\s#:'\"-][^:]*?)\s*:|^(['\"])(.*?)\2\s*:")


def key_lines(raw: list[str]) -> dict[str, int]:
    """The line of each top-level frontmatter key (``raw`` with or without endings)."""
    lines = [strip_ending(line) for line in raw]
    end = frontmatter_end(lines)
    found: dict[str, int] = {}
    for index in range(1, end or 0):
        match = _KEY_LINE.match(lines[index])
        if match:
            found.setdefault((match[1] or match[3]).strip(), index + 1)
    return found


def _criteria(
    path: Path,
    body: list[str],
    found: list[tuple[int, re.Match[str], list[CodeBlock]]],
    starts: list[int],
) -> list[Criterion]:
    """The Acceptance Criteria's checklist items (line, checkbox match, code blocks),
    numbered by position, or by Backlog.md's numbers when every item carries one;
    a number used twice is an error."""
    numbered = bool(found) and all(BACKLOG_NUMBER.match(m["rest"].strip()) for _, m, _ in found)
    criteria: list[Criterion] = []
    for position, (line, match, fences) in enumerate(found, start=1):
        rest = match["rest"].strip()
        number = position
        backlog = BACKLOG_NUMBER.match(rest)
        if numbered and backlog:
            number = int(backlog.group(1))
            rest = rest[backlog.end() :]
        needs = NEEDS.search(rest)
        retries = RETRIES.search(rest)
        criteria.append(
            Criterion(
                number=number,
                line=line,
                raw_line=body[line - 1],
                box=match["box"],
                text=_without_markers(rest),
                blocks=tuple(fences),
                independent=bool(INDEPENDENT.search(rest)),
                needs=tuple(int(n) for n in re.findall(r"\d+", needs.group(1))) if needs else None,
                offset=starts[line - 1],
                service=bool(SERVICE.search(rest)),
                retries=_retries(path, line, retries.group(1)) if retries else None,
            )
        )

    seen: dict[int, int] = {}
    for c in criteria:
        if c.number in seen:
            first = seen[c.number]
            raise TaskFileError(
                path, c.line, f"criterion #{c.number} is numbered twice (first on line {first})"
            )
        seen[c.number] = c.line
    return criteria


def _fences(token: Token) -> list[CodeBlock]:
    from mistletoe.block_token import CodeFence  # mistletoe: loaded by the first parse

    fences: list[Token] = [t for t in _walk(token) if isinstance(t, CodeFence)]
    return [CodeBlock((t.language or "").strip(), _fence_content(t), t.line_number) for t in fences]


def _fence_content(token: Token) -> str:
    return "".join(_plain(c) for c in token.children or ()) if token.children else ""
