"""Edit one scalar in a YAML manifest without disturbing anything else.

Re-dumping a file through a YAML library normalises whitespace, quoting and
comments, which turns a one-line version bump into a noisy GitOps diff. Here the
parser is used only to locate the scalar; the new text is spliced into the
original characters, and the result is parsed again to prove it reads back as
the intended value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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
) -> str:
    """Set the scalar at ``key_path`` to ``value`` and return the old value as text."""
    if document is not None and match is not None:
        raise ManifestError("give either a document index or a match, not both")
    text = _read(path)
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
            _write(path, new_text)
            return str(old.value)
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
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _compose_all(text: str, path: Path | None) -> list[Node]:
    try:
        return [doc for doc in YAML(typ="rt").compose_all(text) if doc is not None]
    except MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ManifestError(f"{path}: not valid YAML: {exc.problem}{where}") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"{path}: not valid YAML: {first}") from None


def _split(key_path: str) -> list[str]:
    segments = key_path.split(".")
    if not key_path or any(not segment for segment in segments):
        raise ManifestError(f"invalid key path {key_path!r}")
    return segments


def _pick_document(
    docs: list[Node],
    segments: list[str],
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


def _scalar_text(doc: Node, segments: list[str]) -> str | None:
    node = _child(doc, segments)
    return str(node.value) if isinstance(node, ScalarNode) else None


def _child(node: Node, segments: list[str]) -> Node | None:
    for step in _walk(node, segments):
        if step is None:
            return None
        node = step
    return node


def _depth(node: Node, segments: list[str]) -> int:
    return sum(1 for step in _walk(node, segments) if step is not None)


def _walk(node: Node, segments: list[str]) -> Iterator[Node | None]:
    """Yield the node reached after each segment, then None once a segment is missing."""
    for segment in segments:
        found = _step(node, segment)
        yield found
        if found is None:
            return
        node = found


def _step(node: Node, segment: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key, child in node.value:
            if isinstance(key, ScalarNode) and key.value == segment:
                return child  # type: ignore[no-any-return]
        return None
    if isinstance(node, SequenceNode) and segment.isdigit():
        position = int(segment)
        return node.value[position] if position < len(node.value) else None
    return None


def _locate(doc: Node, segments: list[str], key_path: str, index: int) -> _Located:
    node = doc
    done: list[str] = []
    for segment in segments:
        found = _step(node, segment)
        here = ".".join(done) or "the document root"
        if found is None:
            raise ManifestError(f"{key_path}: {_missing(node, segment, here, index)}")
        if _reached_through_alias(node, segment, found):
            alias = ".".join([*done, segment])
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


def _missing(node: Node, segment: str, here: str, index: int) -> str:
    suffix = f"(document {index})"
    if isinstance(node, SequenceNode):
        if not segment.isdigit():
            return f"{segment!r} is not a list index under {here} {suffix}"
        return f"index {segment} out of range under {here}: {len(node.value)} items {suffix}"
    if isinstance(node, ScalarNode):
        return f"{segment!r} not found: {here} is a scalar {suffix}"
    return f"{segment!r} not found under {here} {suffix}"


def _reached_through_alias(parent: Node, segment: str, child: Node) -> bool:
    """An alias resolves to the anchored node, which sits earlier in the text."""
    if isinstance(parent, MappingNode):
        for key, value in parent.value:
            if value is child and isinstance(key, ScalarNode) and key.value == segment:
                return bool(child.start_mark.index < key.end_mark.index)
        return False
    position = int(segment)
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


def _reads_back(text: str, index: int, segments: list[str], value: str, tag: str) -> bool:
    try:
        docs = _compose_all(text, None)
    except ManifestError:
        return False
    if index >= len(docs):
        return False
    node = _child(docs[index], segments)
    return isinstance(node, ScalarNode) and node.value == value and str(node.tag) == tag
