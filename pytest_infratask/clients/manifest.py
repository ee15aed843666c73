"""Edit one scalar in a YAML manifest without disturbing anything else.

Re-dumping a file through a YAML library normalises whitespace, quoting and
comments, which turns a one-line version bump into a noisy GitOps diff. Here the
parser is used only to locate the scalar; the new text is spliced into the
original characters, and the result is parsed again to prove it reads back as
the intended value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from pytest_infratask.util.files import atomic_write

_CORE_TAGS = "tag:yaml.org,2002:"
STR_TAG = _CORE_TAGS + "str"
# Kubernetes tooling reads YAML 1.1 (yes/no are booleans) while ruamel reads 1.2,
# so a bare scalar is only written when both versions agree on its type.
_VERSIONS = ("1.1", "1.2")
_SHORTHAND = {"name": "metadata.name", "namespace": "metadata.namespace"}


class ManifestError(Exception):
    """A manifest edit that cannot be made; the message is one line."""


@dataclass(frozen=True)
class _Located:
    node: ScalarNode
    start: int
    end: int
    tagged: bool


def set_value(
    path: Path,
    key_path: str,
    value: str,
    *,
    document: int | None = None,
    match: dict[str, str] | None = None,
    create: bool = False,
) -> str | None:
    """Set the scalar at ``key_path`` to ``value`` and return the old value as text.

    A Markdown task file's frontmatter is edited in place, the body untouched; with
    ``create`` a missing top-level key is added at the end of the frontmatter (None:
    there was no old value)."""
    if document is not None and match is not None:
        raise ManifestError("give either a document index or a match, not both")
    text = _read(path)
    front = frontmatter_span(text) if path.suffix.lower() == ".md" else None
    if path.suffix.lower() == ".md" and front is None:
        raise ManifestError(f"{path}: no YAML frontmatter (a first line of ---) to edit")
    start, end = front or (0, len(text))
    part = text[start:end]
    if front is not None and _top_key_missing(part, key_path):
        if not create:
            raise ManifestError(
                f"{key_path}: not in the frontmatter of {path}; add --create to add it"
            )
        newline = "\r\n" if "\r\n" in part else "\n"
        added = f"{key_path}: {_plain(value)}{newline}"
        _write(path, text[:start] + part + added + text[end:])
        return None
    edited, old = _edit(part, path, key_path, value, document, match)
    _write(path, text[:start] + edited + text[end:])
    return old


def frontmatter_span(text: str) -> tuple[int, int] | None:
    """Where the frontmatter's YAML starts and ends (before its closing ``---``)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").strip() != "---":
        return None
    at = len(lines[0])
    for line in lines[1:]:
        if line.rstrip("\r\n").strip() == "---":
            return len(lines[0]), at
        at += len(line)
    return None


def _top_key_missing(text: str, key_path: str) -> bool:
    """Whether ``key_path`` is one top-level key the frontmatter does not have."""
    segments = _split(key_path)
    if len(segments) != 1 or segments[0].key is None:
        return False
    docs = _compose_all(text, None)
    return not docs or (isinstance(docs[0], MappingNode) and _step(docs[0], segments[0]) is None)


def _plain(value: str) -> str:
    """``value`` as written for a new key: plain when YAML reads it back as that scalar
    (``2``, ``true``, ``api``), else double-quoted."""
    try:
        read = YAML(typ="safe").load(f"k: {value}")
    except YAMLError:
        read = None
    fits = isinstance(read, dict) and list(read) == ["k"] and "#" not in value
    kept = fits and read["k"] is not None and not isinstance(read["k"], (dict, list))
    if kept and (not isinstance(read["k"], str) or read["k"] == value):
        return value
    return json.dumps(value)


def _edit(
    text: str,
    path: Path,
    key_path: str,
    value: str,
    document: int | None,
    match: dict[str, str] | None,
) -> tuple[str, str]:
    docs = _compose_all(text, path)
    segments = _split(key_path)
    index = _pick_document(docs, segments, key_path, document, match)
    located = _locate(docs[index], segments, key_path, index)
    old = located.node
    old_text = text[located.start : located.end]
    lead = " " if located.start == located.end else ""
    for candidate, tag in _candidates(old, old_text, value, tagged=located.tagged):
        new_text = text[: located.start] + lead + candidate + text[located.end :]
        if _reads_back(new_text, index, segments, value, tag):
            return new_text, str(old.value)
    if located.tagged:
        raise ManifestError(f"{key_path}: {value!r} does not fit its explicit tag {old.tag}")
    raise ManifestError(f"{key_path}: {value!r} cannot be written as a YAML scalar here")


def _read(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not valid YAML: not UTF-8 text") from None


def _write(path: Path, text: str) -> None:
    """Replaced whole, keeping the manifest's mode: a reader (or Flux reading a
    commit) never sees half an edit."""
    target = Path(os.path.realpath(path))  # a symlinked manifest: its target, the link kept
    atomic_write(target, text, like=target.stat())


def _compose_all(text: str, path: Path | None) -> list[Node]:
    try:
        return [doc for doc in YAML(typ="rt").compose_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ManifestError(f"{path}: not valid YAML: {exc.problem}{where}") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"{path}: not valid YAML: {first}") from None


@dataclass(frozen=True)
class _Segment:
    """One step of a key path: a mapping key, a list index or a ``[key=value]`` selector.

    ``text`` is the step as written, so messages quote what the user typed.
    """

    text: str
    key: str | None = None
    index: int | None = None
    select: tuple[tuple[str, ...], str] | None = None

    def __str__(self) -> str:
        return self.text


def _split(key_path: str) -> list[_Segment]:
    """Parse ``a.b.0.c`` and yq's ``.a.b[0].c``, ``[name=api]``, ``["dotted.key"]``."""
    text = key_path.strip()
    segments: list[_Segment] = []
    pos = 1 if text.startswith(".") else 0
    expect_key = True  # at the start and after a dot, a plain key (or a bracket) comes next
    while pos < len(text):
        char = text[pos]
        if char == "[":
            close = _closing_bracket(text, pos, key_path)
            segments.append(_bracket(text[pos : close + 1], key_path))
            pos = close + 1
            expect_key = False
        elif char == "." and not expect_key:
            pos += 1
            expect_key = True
        elif expect_key and char not in ".]":
            end = pos
            while end < len(text) and text[end] not in ".[]":
                end += 1
            segments.append(_Segment(text[pos:end], key=text[pos:end]))
            pos = end
            expect_key = False
        else:
            raise ManifestError(f"invalid key path {key_path!r}: unexpected {char!r} at {pos + 1}")
    if not segments or expect_key:
        raise ManifestError(f"invalid key path {key_path!r}")
    return segments


def _closing_bracket(text: str, start: int, key_path: str) -> int:
    quote = None
    for pos in range(start + 1, len(text)):
        char = text[pos]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "]":
            return pos
    raise ManifestError(f"invalid key path {key_path!r}: unclosed {text[start:]!r}")


def _bracket(text: str, key_path: str) -> _Segment:
    inner = text[1:-1].strip()
    if re.fullmatch(r"-?\d+", inner):
        return _Segment(text, index=int(inner))
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
        return _Segment(text, key=inner[1:-1])
    field_path, sep, wanted = inner.partition("=")
    field_path = field_path.strip()
    if sep and field_path:
        wanted = wanted.strip()
        if len(wanted) >= 2 and wanted[0] == wanted[-1] and wanted[0] in "\"'":
            wanted = wanted[1:-1]
        fields = tuple(field_path.lstrip(".").split("."))
        if all(fields):
            return _Segment(text, select=(fields, wanted))
    raise ManifestError(
        f'invalid key path {key_path!r}: {text} is neither [N], [key=value] nor ["key"]'
    )


def _render(segments: list[_Segment]) -> str:
    out = ""
    for segment in segments:
        joiner = "" if not out or segment.text.startswith("[") else "."
        out += joiner + segment.text
    return out


def _pick_document(
    docs: list[Node],
    segments: list[_Segment],
    key_path: str,
    document: int | None,
    match: dict[str, str] | None,
) -> int:
    if document is not None:
        if not 0 <= document < len(docs):
            raise ManifestError(f"no document {document}: the file has {len(docs)}")
        return document
    if match is not None:
        return _matching_document(docs, match)
    having = [index for index, doc in enumerate(docs) if _child(doc, segments) is not None]
    if len(having) == 1:
        return having[0]
    if having:
        listed = ", ".join(str(index) for index in having)
        raise ManifestError(
            f"{key_path} is in documents {listed}; choose one with a document index or a match"
        )
    if not docs:
        raise ManifestError("the file holds no YAML documents")
    # Report the document where the path gets furthest, so the message names a real gap.
    deepest = max(range(len(docs)), key=lambda index: _depth(docs[index], segments))
    _locate(docs[deepest], segments, key_path, deepest)
    raise AssertionError("unreachable: _locate raises when the path is missing")


def _matching_document(docs: list[Node], match: dict[str, str]) -> int:
    if not match:
        raise ManifestError("empty match")
    wanted = {_SHORTHAND.get(key, key): expected for key, expected in match.items()}
    hits = [
        index
        for index, doc in enumerate(docs)
        if all(_scalar_text(doc, _split(key)) == expected for key, expected in wanted.items())
    ]
    shown = ",".join(f"{key}={expected}" for key, expected in match.items())
    if not hits:
        raise ManifestError(f"no document matches {shown}")
    if len(hits) > 1:
        listed = ", ".join(str(index) for index in hits)
        raise ManifestError(f"documents {listed} all match {shown}; make the match narrower")
    return hits[0]


def _scalar_text(doc: Node, segments: list[_Segment]) -> str | None:
    node = _child(doc, segments)
    return str(node.value) if isinstance(node, ScalarNode) else None


def _child(node: Node, segments: list[_Segment]) -> Node | None:
    for step in _walk(node, segments):
        if step is None:
            return None
        node = step
    return node


def _depth(node: Node, segments: list[_Segment]) -> int:
    return sum(1 for step in _walk(node, segments) if step is not None)


def _walk(node: Node, segments: list[_Segment]) -> Iterator[Node | None]:
    """Yield the node reached after each segment, then None once a segment is missing."""
    for segment in segments:
        found = _step(node, segment)
        yield found
        if found is None:
            return
        node = found


def _step(node: Node, segment: _Segment) -> Node | None:
    if isinstance(node, MappingNode):
        if segment.key is None:
            return None
        for key, child in node.value:
            if isinstance(key, ScalarNode) and key.value == segment.key:
                return child  # type: ignore[no-any-return]
        return None
    if isinstance(node, SequenceNode):
        position = _position(node, segment)
        return node.value[position] if position is not None else None
    return None


def _position(node: SequenceNode, segment: _Segment) -> int | None:
    """The list position a segment picks: ``[N]`` (negative from the end), ``N``, or the
    one item whose field equals the selector's value."""
    count = len(node.value)
    index = segment.index
    if index is None and segment.key is not None and segment.key.isdigit():
        index = int(segment.key)
    if index is not None:
        index = index + count if index < 0 else index
        return index if 0 <= index < count else None
    if segment.select is None:
        return None
    hits = _selected(node, segment)
    return hits[0] if len(hits) == 1 else None


def _selected(node: SequenceNode, segment: _Segment) -> list[int]:
    assert segment.select is not None
    fields, wanted = segment.select
    path = [_Segment(name, key=name) for name in fields]
    return [
        position for position, item in enumerate(node.value) if _scalar_text(item, path) == wanted
    ]


def _locate(doc: Node, segments: list[_Segment], key_path: str, index: int) -> _Located:
    node = doc
    done: list[_Segment] = []
    for segment in segments:
        found = _step(node, segment)
        here = _render(done) or "the document root"
        if found is None:
            raise ManifestError(f"{key_path}: {_missing(node, segment, here, index)}")
        if _reached_through_alias(node, segment, found):
            alias = _render([*done, segment])
            raise ManifestError(f"{alias} is a YAML alias; edit the anchored value instead")
        node = found
        done.append(segment)
    if not isinstance(node, ScalarNode):
        kind = "mapping" if isinstance(node, MappingNode) else "list"
        raise ManifestError(f"{key_path} is a {kind}, not a scalar (document {index})")
    if node.anchor:
        raise ManifestError(f"{key_path} is anchored (&{node.anchor}); aliases would change too")
    start, end = _span(node)
    return _Located(node, start, end, tagged=node.start_mark.buffer[node.start_mark.index] == "!")


def _missing(node: Node, segment: _Segment, here: str, index: int) -> str:
    suffix = f"(document {index})"
    if isinstance(node, SequenceNode):
        count = len(node.value)
        if segment.select is not None:
            fields = segment.select[0]
            name = ".".join(fields)
            hits = _selected(node, segment)
            if hits:
                listed = ", ".join(str(hit) for hit in hits)
                return f"{segment} matches items {listed} under {here}; select one {suffix}"
            seen = [_scalar_text(item, [_Segment(f, key=f) for f in fields]) for item in node.value]
            known = ", ".join(sorted({value for value in seen if value is not None})) or "none"
            return f"{segment} matches no item under {here} ({name} values: {known}) {suffix}"
        if segment.index is not None or (segment.key or "").isdigit():
            return f"index {segment} out of range under {here}: {count} items {suffix}"
        return f"{str(segment)!r} is not a list index under {here} {suffix}"
    if isinstance(node, ScalarNode):
        return f"{str(segment)!r} not found: {here} is a scalar {suffix}"
    if segment.key is None:
        return f"{segment} needs a list, but {here} is a mapping {suffix}"
    return f"{segment.key!r} not found under {here} {suffix}"


def _reached_through_alias(parent: Node, segment: _Segment, child: Node) -> bool:
    """An alias resolves to the anchored node, which sits earlier in the text."""
    if isinstance(parent, MappingNode):
        for key, value in parent.value:
            if value is child and isinstance(key, ScalarNode) and key.value == segment.key:
                return bool(child.start_mark.index < key.end_mark.index)
        return False
    assert isinstance(parent, SequenceNode)
    position = _position(parent, segment)
    assert position is not None
    floor = parent.value[position - 1].end_mark.index if position else parent.start_mark.index
    return bool(child.start_mark.index < floor) or (
        position > 0 and parent.value[position - 1] is child
    )


def _span(node: ScalarNode) -> tuple[int, int]:
    """Character range of the scalar itself: after any ``!tag``, before trailing breaks."""
    buffer = node.start_mark.buffer
    start: int = node.start_mark.index
    end: int = node.end_mark.index
    if buffer[start] == "!":
        while not buffer[start].isspace():
            start += 1
        while buffer[start] in " \t":
            start += 1
        end = max(start, end)
    if node.style in ("|", ">"):
        end = start + len(buffer[start:end].rstrip(" \t\r\n"))
    elif start == end:
        # An empty value may be marked on the next line; anchor it after its ':' or '-'.
        while start > 0 and buffer[start - 1] in " \t\r\n":
            start -= 1
        end = start
    return start, end


def _candidates(
    old: ScalarNode, old_text: str, value: str, *, tagged: bool
) -> Iterator[tuple[str, str]]:
    """Yield (text, tag) renderings of ``value`` in the old scalar's style, safest last."""
    style = old.style
    if style in (None, ""):
        fits = old.tag == STR_TAG or not str(old.tag).startswith(_CORE_TAGS)
        if tagged and (fits or _plain_reading(value, "1.2") == old.tag):
            # The explicit tag keeps deciding the type, so it must fit the new text.
            yield value, str(old.tag)
        elif not tagged and _same_type(old_text, value):
            yield value, str(old.tag)
        elif all(_plain_reading(value, version) == STR_TAG for version in _VERSIONS):
            yield value, STR_TAG
    elif style == "'" and "\n" not in value:
        yield "'" + value.replace("'", "''") + "'", STR_TAG
    elif style in ("|", ">") and value:
        yield from ((block, STR_TAG) for block in _blocks(style, old_text, value))
    yield _double_quoted(value), STR_TAG


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _double_quoted(value: str) -> str:
    """YAML double-quoted form; characters YAML may not hold raw become escapes."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif _printable(char):
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _printable(char: str) -> bool:
    # YAML's printable set, minus the line separators that would be folded inside quotes.
    code = ord(char)
    if code in (0x2028, 0x2029, 0xFEFF):
        return False
    return (
        0x20 <= code <= 0x7E
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _same_type(old_text: str, value: str) -> bool:
    for version in _VERSIONS:
        tag = _plain_reading(value, version)
        if tag is None or tag != _plain_reading(old_text, version):
            return False
    return True


def _plain_reading(text: str, version: str) -> str | None:
    """The tag a bare ``text`` resolves to under a YAML version, None if not a plain scalar."""
    if not text or text != text.strip() or "\n" in text or "\r" in text:
        return None
    try:
        node = YAML(typ="rt").compose(f"%YAML {version}\n--- {text}\n")
    except YAMLError:
        return None
    if not isinstance(node, ScalarNode) or node.style not in (None, "") or node.value != text:
        return None
    return str(node.tag)


def _blocks(style: str, old_text: str, value: str) -> Iterator[str]:
    """Block scalars keep their indentation; chomping is chosen to reproduce ``value``."""
    lines = old_text.splitlines()
    header = re.match(r"[|>][0-9+-]*", lines[0])
    comment = lines[0][header.end() :] if header else ""
    body = [line for line in lines[1:] if line.strip()]
    indent = len(body[0]) - len(body[0].lstrip(" ")) if body else 2
    newline = "\r\n" if "\r\n" in old_text else "\n"
    trailing = value[len(value.rstrip("\n")) :]
    chomp = "-" if not trailing else ("" if trailing == "\n" else "+")
    content = value.rstrip("\n").split("\n")
    rendered = newline.join((" " * indent + line) if line else "" for line in content)
    for indicator in dict.fromkeys((style, "|")):
        yield f"{indicator}{chomp}{comment}{newline}{rendered}"


def _reads_back(text: str, index: int, segments: list[_Segment], value: str, tag: str) -> bool:
    try:
        docs = _compose_all(text, None)
    except ManifestError:
        return False
    if index >= len(docs):
        return False
    node = _child(docs[index], segments)
    return isinstance(node, ScalarNode) and node.value == value and str(node.tag) == tag


def node_at(doc: Node, key_path: str) -> Node | None:
    """The node at ``key_path`` (any syntax ``infratask set`` takes), None when missing."""
    try:
        return _child(doc, _split(key_path))
    except ManifestError:
        return None


def compose_documents(text: str) -> list[Node]:
    """Every YAML document of ``text`` as ruamel nodes, which carry their line numbers."""
    return _compose_all(text, None)
