"""The block outline of a task file body: headings, list items and code fences.

mistletoe parses all of Markdown; task files use a small part of it (ATX
headings, lists, fenced code, paragraphs). ``fast_outline`` reads that part in one pass
over the lines, following mistletoe's own rules, and returns None at the first
line outside it, so the reader falls back to mistletoe for that file. Collection
then costs a fraction of a full parse, and mistletoe is imported only for files
that need it. A differential test holds the two to the same outline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pytest_infratask.core.task import CodeBlock

# Whitespace other than space and newline (tabs, CR, Unicode spaces), and NUL:
# mistletoe expands or matches these in ways not worth mirroring.
_ODD = re.compile(r"[^\S \n]|\x00")
_HEADING = re.compile(r"(#{1,6})(?: +([^\\`*_~\[\]!<>&#]*?))? *$")
_STARTS_HEADING = re.compile(r" {0,3}#{1,6}(?:\s|$)")
_STARTS_FENCE = re.compile(r" {0,3}(?:`{3}|~{3})")
_FENCE = re.compile(r"(`{3,}|~{3,}) *(\S*)(.*)$")
_MARKER = re.compile(r" {0,3}(?:\d{0,9}[.)]|[-+*])(?:\s|$)")
_ITEM = re.compile(r"( {0,3})(\d{1,9}[.)]|[-+*])( {1,4})(?=\S)")
_THEMATIC = re.compile(r" {0,3}([-_*])\s*?(?:\1\s*?){2,}$")
_RULE_LIKE = re.compile(r"\s*[-|:=]*-[-|:= ]*$|\s*=+\s*$")  # setext, table delimiter rows
_FOOTNOTE = re.compile(r"\s*\[[^\]]*\]:")
_PARAGRAPH_START = re.compile(r"[^#>`~|=\-*+_]")


class Unsupported(Exception):
    """A line the scanner does not read; mistletoe reads the file instead."""


@dataclass
class Outline:
    """What the model needs from the body. Line numbers are 1-based."""

    headings: list[tuple[int, int, str]] = field(default_factory=list)  # line, level, text
    items: list[tuple[int, list[CodeBlock]]] = field(default_factory=list)  # top-level items
    fences: list[CodeBlock] = field(default_factory=list)  # every fence, in document order


def fast_outline(body: list[str]) -> Outline | None:
    """The outline of ``body`` (lines without endings), or None outside the subset."""
    if _ODD.search("\n".join(body)):
        return None
    outline = Outline()
    try:
        _container(body, 1, outline, None)
    except (Unsupported, RecursionError):
        return None
    return outline


def _refused(line: str) -> bool:
    """Blocks mistletoe reads that the scanner does not: quotes, thematic breaks,
    tables, setext underlines, link reference definitions."""
    stripped = line.lstrip(" ")
    return (stripped.startswith(">") and len(line) - len(stripped) < 4) or bool(
        _THEMATIC.match(line) or _RULE_LIKE.match(line) or _FOOTNOTE.match(line)
    )


def _container(
    lines: list[str], first: int, outline: Outline, owner: list[CodeBlock] | None
) -> None:
    """Blocks of the document (``owner`` None) or of one list item's content."""
    i, paragraph = 0, False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if not stripped:
            paragraph = False
            i += 1
            continue
        if indent >= 4:
            if not paragraph:
                raise Unsupported  # indented code
            i += 1
            continue
        if _refused(line):
            raise Unsupported
        if stripped[0] == "#":
            level, text = _heading(stripped)
            if owner is None:
                outline.headings.append((first + i, level, text))
            i, paragraph = i + 1, False
            continue
        fence = _FENCE.match(stripped)
        if fence is not None:
            i = _fence(lines, i, first, indent, fence, outline, owner)
            paragraph = False
            continue
        marker = _MARKER.match(line)
        if marker is not None:
            item = _ITEM.match(line)
            if paragraph and _continues_paragraph(line, marker, item):
                i += 1
                continue
            if item is None:
                raise Unsupported
            i = _item(lines, i, first, item, outline, owner)
            paragraph = False
            continue
        paragraph = True
        i += 1


def _continues_paragraph(line: str, marker: re.Match[str], item: re.Match[str] | None) -> bool:
    """mistletoe: an empty item, or a numbered one not starting at 1, is paragraph text."""
    if item is None:
        return not line[marker.end() :].strip()
    leader = item[2]
    return leader[0].isdigit() and leader[:-1] != "1"


def _heading(stripped: str) -> tuple[int, str]:
    match = _HEADING.match(stripped)
    if match is None:
        raise Unsupported
    return len(match[1]), (match[2] or "").strip()


def _fence(
    lines: list[str],
    i: int,
    first: int,
    indent: int,
    match: re.Match[str],
    outline: Outline,
    owner: list[CodeBlock] | None,
) -> int:
    delimiter, language, info = match[1], match[2], match[3]
    if (delimiter[0] == "`" and "`" in language + info) or "\\" in language:
        raise Unsupported
    content = []
    j = i + 1
    while j < len(lines):
        line = lines[j]
        stripped = line.lstrip(" ")
        diff = len(line) - len(stripped)
        j += 1
        if diff < 4 and stripped.startswith(delimiter) and len(stripped.split(maxsplit=1)) == 1:
            break
        if diff > indent:
            stripped = " " * (diff - indent) + stripped
        content.append(stripped + "\n")
    block = CodeBlock(language.strip(), "".join(content), first + i)
    outline.fences.append(block)
    if owner is not None:
        owner.append(block)
    return j


def _item(
    lines: list[str],
    i: int,
    first: int,
    match: re.Match[str],
    outline: Outline,
    owner: list[CodeBlock] | None,
) -> int:
    """One list item, read as mistletoe's ListItem.read reads it; returns the next index."""
    prepend = match.end()
    content = lines[i][prepend:]
    if not _PARAGRAPH_START.match(content) or _MARKER.match(content) or _FOOTNOTE.match(content):
        raise Unsupported
    body = [content]
    j, blanks, next_item = i + 1, 0, False
    while j < len(lines):
        line = lines[j]
        stripped = line.lstrip(" ")
        if not stripped:
            body.append("")
            blanks += 1
        elif len(line) - len(stripped) >= prepend:
            body.append(line[prepend:])
            blanks = 0
        elif _refused(line) or (
            "|" in line and j + 1 < len(lines) and _RULE_LIKE.match(lines[j + 1])
        ):
            raise Unsupported  # a table starting here would end the item too
        elif _MARKER.match(line):
            next_item = True
            break
        elif _STARTS_HEADING.match(line) or _STARTS_FENCE.match(line) or blanks:
            break  # a block that ends the item, or text after a blank line
        else:
            body.append(line)  # lazy continuation
        j += 1
    while not next_item and body and not body[-1]:  # as in mistletoe, trailing blank lines
        body.pop()  # leave the item, except before the next item
        j -= 1
    fences: list[CodeBlock] = [] if owner is None else owner
    if owner is None:
        outline.items.append((first + i, fences))
    _container(body, first + i, outline, fences)
    return j
