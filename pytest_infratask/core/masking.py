"""Mask secrets before any text leaves the process: one path for everything a person
or a file sees (streamed output, failure text, reports, progress lines, commits).

A ``Masker`` is one object per task run. ``mask(text)`` replaces with ``***`` every
known secret value in the forms it travels in, every credential recognisable by its
shape, and the password of any ``scheme://user:password@``; ``lines()`` masks streamed
output line by line; ``mask_data`` walks a report. What is known comes from
``run.secrets``: the environment, and the credential files of the user and the task.

The forms of a value: itself, URL-encoded, and base64-encoded, also inside a longer
encoded text (``base64("user:" + password)`` in an ``Authorization: Basic`` header).
Inside such a text a value's encoding depends on where its first byte falls in a
three-byte group, so the masker knows the encoding at each of the three alignments,
without the edge characters that depend on the neighbours, and masks the edge
characters beside such a core with it.

Boolean-like and very short values (``true``, ``no``, ``1``...) are never masked: that
would garble every line and protect nothing.
"""

from __future__ import annotations

import base64
import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self, TypeAlias, TypeVar, cast
from urllib.parse import quote, quote_plus

from pytest_infratask.core.ci import on_github_actions
from pytest_infratask.core.secrets import (
    PEM_BEGIN,
    PEM_END,
    USERINFO,
    environment_secrets,
    file_secrets,
    shapes,
    url_pairs,
)

MASK = "***"
MIN_LENGTH = 4
HARMLESS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "0", "1", "none", "null", "enabled", "disabled"}
)
# A private key block: its body runs until the END line, or (cut) until a line that
# cannot be part of it. A JSON-escaped key (``\n`` in one line) is one too.
_PEM_BODY = r"(?:[A-Za-z0-9+/=\s]|\\[rn]|(?:Proc-Type|DEK-Info):[^\r\n]*)*"
PEM_BLOCK = re.compile(PEM_BEGIN.pattern + _PEM_BODY + f"(?:{PEM_END.pattern})?")
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
# How far back a long line held for the next piece looks for a word's start: a token
# (a JWT, a key) is kept whole up to this length.
TOKEN_HOLD = 8192
_SHORT = 2048  # a text up to this long is asked with one pattern first


def _harmless(value: str) -> bool:
    return len(value) < MIN_LENGTH or value.strip().lower() in HARMLESS


def _base64_cores(raw: bytes) -> dict[str, tuple[int, int]]:
    """The base64 of ``raw`` at each alignment inside a longer text, as core -> (edge
    characters before, after): the characters that also carry a neighbour's bits."""
    cores: dict[str, tuple[int, int]] = {}
    for align in (0, 1, 2):
        rem = (align + len(raw)) % 3
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * align + raw).decode().rstrip("=")
            core = text[(0, 2, 3)[align] : len(text) - (1 if rem else 0)]
            if len(core) >= MIN_LENGTH:
                cores[core] = (1 if align else 0, 1 if rem else 0)
    return cores


def forms(value: str, encoded_only: bool = False) -> dict[str, tuple[int, int]]:
    """Every form ``value`` travels in, with the edge characters masked beside it;
    ``encoded_only``: its base64 forms alone."""
    plain = () if encoded_only else (value, quote(value, safe=""), quote_plus(value, safe=""))
    found = dict.fromkeys(plain, (0, 0))
    raw = value.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        found |= dict.fromkeys((text, text.rstrip("=")), (0, 0))
    for core, edges in _base64_cores(raw).items():
        old = found.get(core, (0, 0))
        found[core] = (max(old[0], edges[0]), max(old[1], edges[1]))
    return {f: edges for f, edges in found.items() if not _harmless(f)}


J = TypeVar("J")
_Trie: TypeAlias = dict[str, "_Trie"]


def _any_of(words: Iterable[str]) -> re.Pattern[str]:
    """A pattern matching any of ``words``, their common prefixes shared (a trie): a
    search tries one branch per next character instead of every word."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: _Trie) -> str:
        chain = []
        while len(node) == 1 and "" not in node:  # a run without branches: no recursion
            ((char, node),) = node.items()
            chain.append(re.escape(char))
        branches = [re.escape(char) + pattern(rest) for char, rest in sorted(node.items()) if char]
        body = (
            ""
            if not branches
            else branches[0]
            if len(branches) == 1
            else "(?:" + "|".join(branches) + ")"
        )
        return "".join(chain) + (f"(?:{body})?" if body and "" in node else body)

    try:
        return re.compile(pattern(trie))
    except RecursionError:  # thousands of nested prefixes: one branch per word
        return re.compile("|".join(map(re.escape, sorted(words, key=len, reverse=True))))


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def _pem_spans(text: str) -> list[tuple[int, int]]:
    """Private key blocks; a block whose start was cut off ends in an END line, and runs
    back from it over what can be key body."""
    spans = []
    for match in PEM_BLOCK.finditer(text):
        spans.append((match.start(), match.start() + len(match.group().rstrip())))
    for match in PEM_END.finditer(text):
        spans.append((_key_start(text, match.start()), match.end()))
    return spans


_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]+")
_ESCAPED_KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\\"
)


def _key_start(text: str, end: int) -> int:
    """Where the key body before the END marker at ``end`` begins: whole lines of key
    characters, or (an escaped key on one line) key characters and ``\\n``."""
    newline = text.rfind("\n", 0, end)
    if text[newline + 1 : end].strip():
        start = end
        while start > 0 and text[start - 1] in _ESCAPED_KEY_CHARS:
            start -= 1
        return start
    start = newline + 1
    while newline > 0:
        previous = text.rfind("\n", 0, newline) + 1
        if not _KEY_LINE.fullmatch(text[previous:newline].strip()):
            break
        start, newline = previous, previous - 1
    while start < end and text[start].isspace():
        start += 1
    return start


class Masker:
    """Replace every known secret, and URL passwords, with ``***``.

    The values themselves are kept out of ``repr`` so a traceback printing locals
    (``pytest -l``) shows no secret.
    """

    def __init__(self, *envs: Mapping[str, str]) -> None:
        self._forms: dict[str, tuple[int, int]] = {}
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0
        for env in envs:
            self.add(environment_secrets(env))
            self.add(url_pairs(env), encoded_only=True)

    @classmethod
    def for_run(
        cls,
        env: Mapping[str, str],
        names: Iterable[str] = (),
        *,
        auth_file: Path | None = None,
        task_files: bool = True,
    ) -> Masker:
        """Everything a task's commands can reach: its environment, and the credential
        files both it and the user's own environment point at (a task's ``HOME`` cannot
        hide the user's). ``task_files=False`` (a dry run) reads no file the task names."""
        masker = cls()
        masker.add(environment_secrets(env, names))
        masker.add(url_pairs(env), encoded_only=True)
        sources: list[Mapping[str, str]] = [os.environ, env] if task_files else [os.environ]
        masker.add(file_secrets(sources, auth_file if task_files else None))
        return masker

    def add(self, values: Iterable[str], *, encoded_only: bool = False) -> None:
        """Mask ``values`` from now on, in every form (``encoded_only``: base64 alone)."""
        new = {
            form: edges
            for v in values
            if isinstance(v, str) and not _harmless(v)
            for form, edges in forms(v, encoded_only).items()
            if self._forms.get(form) != edges
        }
        if new:
            for form, edges in new.items():
                old = self._forms.get(form, (0, 0))
                self._forms[form] = (max(old[0], edges[0]), max(old[1], edges[1]))
            self._pattern = _any_of(self._forms)
            self.longest = max(map(len, self._forms))

    @property
    def values(self) -> list[str]:
        """The literal forms masked (for ``::add-mask::``), longest first."""
        return sorted(self._forms, key=len, reverse=True)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` holds a secret, as sorted, disjoint (start, end) spans."""
        spans = self._known(text)
        spans += [m.span() for m in shapes(text)]
        if "://" in text:
            spans += [m.span(3) for m in USERINFO.finditer(text)]
        if "PRIVATE KEY-----" in text:
            spans += _pem_spans(text)
        return _merged(spans)

    def _known(self, text: str) -> list[tuple[int, int]]:
        """Known forms, overlapping ones too (one value may begin inside another), each
        widened over the encoded edge characters beside it. A short text is first
        asked whether it holds any (one pattern); a long one is searched form by form,
        which costs less than the pattern over every position."""
        if self._pattern is None or (len(text) < _SHORT and not self._pattern.search(text)):
            return []
        spans = []
        for form, (before, after) in self._forms.items():
            found = text.find(form)
            while found >= 0:
                start, end = found, found + len(form)
                if before and start > 0 and text[start - 1] in _BASE64_CHARS:
                    start -= 1
                if after and end < len(text) and text[end] in _BASE64_CHARS:
                    end += 1
                while after and end < len(text) and text[end] == "=":
                    end += 1
                spans.append((start, end))
                found = text.find(form, found + 1)
        return spans

    def mask(self, text: str) -> str:
        if not text:
            return text
        parts, last = [], 0
        for start, end in self.spans(text):
            parts += [text[last:start], MASK]
            last = end
        return "".join(parts) + text[last:] if parts else text

    __call__ = mask

    def mask_line(self, line: str) -> str:
        """One line of output (with or without its newline)."""
        return self.mask(line)

    def lines(self) -> LineMasker:
        """A masker for one stream of output lines, which remembers an open key block."""
        return LineMasker(self)

    def cut(self, text: str) -> int:
        """Where a line still being written may be split: ``text[:cut]`` can be masked
        and shown on its own. What could still begin a secret stays back (the length of
        the longest known form, the word being written), and no secret crosses the cut."""
        cut = max(0, len(text) - self.longest - 2)
        word = max(text.rfind(" ", 0, cut), text.rfind("\t", 0, cut))
        if cut - word <= TOKEN_HOLD:
            cut = word + 1
        for start, end in self.spans(text):
            if start < cut < end:
                return start
        return cut

    def mask_data(self, data: J) -> J:
        """A copy of JSON-like data, of the same shape, with every string masked."""
        masked: object
        if isinstance(data, str):
            masked = self.mask(data)
        elif isinstance(data, dict):
            masked = {k: self.mask_data(v) for k, v in data.items()}
        elif isinstance(data, tuple):
            masked = tuple(self.mask_data(v) for v in data)
        elif isinstance(data, list):
            masked = [self.mask_data(v) for v in data]
        else:
            return data
        return cast("J", masked)

    def __repr__(self) -> str:
        return f"<Masker: {len(self._forms)} values>"


_PEM_LINE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]+|(?:Proc-Type|DEK-Info):.*)[ \t]*")


class LineMasker:
    """Masks one output stream a line at a time: the body lines of a private key block
    are masked by the block they belong to, which a single line does not show."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.in_key = False

    def __call__(self, line: str) -> str:
        if self.in_key and not line.strip():
            return line
        if self.in_key and _PEM_LINE.fullmatch(line.rstrip("\r\n")):
            return MASK
        if self.in_key and PEM_END.search(line):
            self.in_key = False
            return MASK
        begins = [m.end() for m in PEM_BEGIN.finditer(line)]
        self.in_key = bool(begins) and not PEM_END.search(line, begins[-1])
        return self.masker.mask(line)


class Environment(dict[str, str]):
    """A command's environment; its ``repr`` names variables, never values, so a
    traceback printing locals (``pytest -l``) cannot show a secret."""

    def __repr__(self) -> str:
        return f"<Environment: {len(self)} variables>"

    def with_values(self, values: Mapping[str, str]) -> Self:
        """A copy with ``values`` set, of the same kind and with the same attributes (a
        ``CommandEnv`` keeps its sandbox: the ``KUBECONFIG`` it names exists only there)."""
        extended = copy.copy(self)
        extended.update(values)
        return extended


ANNOUNCED: set[str] = set()
"""The values this process has told GitHub Actions to mask: each is told once."""


def github_add_mask(masker: Masker, seen: set[str] = ANNOUNCED) -> list[str]:
    """``::add-mask::`` lines for values not announced yet (GitHub Actions only)."""
    if not on_github_actions():
        return []
    lines = []
    for value in masker.values:
        if value not in seen and "\n" not in value:
            seen.add(value)
            lines.append(f"::add-mask::{value}")
    return lines
