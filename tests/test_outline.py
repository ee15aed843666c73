"""outline.py: the one-pass scanner gives mistletoe's outline, or steps aside.

The property test is differential: on generated bodies made of the lines task
files hold (and of lines that trip parsers up), wherever the scanner answers,
its answer is mistletoe's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_infratask.read.outline import fast_outline
from pytest_infratask.read.taskfile import (
    body_of,
    decode,
    mistletoe_outline,
    split_lines,
    strip_ending,
)

EXAMPLES = int(os.environ.get("INFRATASK_FUZZ_EXAMPLES", "200"))
ROOT = Path(__file__).resolve().parent.parent

WORDS = ["build", "true", "Progress Log", "Acceptance Criteria", "Verification", "a | b", "x"]
TEXT = st.sampled_from([*WORDS, "<!-- AC:BEGIN -->", "<!-- needs: #1 -->", "#1 step", "日本 ✓"])
CONTENT = st.one_of(
    st.builds(lambda t: f"[ ] {t}", TEXT),
    st.builds(lambda t: f"[x] {t}", TEXT),
    TEXT,
    st.sampled_from(["", " x", "```bash", "# h", "- [ ] nested", "1. one", "> q", "[a]: /u"]),
)
MARKERS = st.sampled_from(["-", "*", "+", "1.", "2.", "1)", "01.", "10.", ".", "-"])
ITEM = st.builds(
    lambda ind, m, sp, c: " " * ind + m + " " * sp + c,
    st.integers(0, 6),
    MARKERS,
    st.integers(0, 5),
    CONTENT,
)
HEADING = st.builds(
    lambda ind, h, t: " " * ind + "#" * h + t,
    st.integers(0, 4),
    st.integers(1, 7),
    st.sampled_from([" " + w for w in WORDS] + ["", " ", "x", " a #", " *b*", " ##"]),
)
FENCE = st.builds(
    lambda ind, f, info: " " * ind + f + info,
    st.integers(0, 6),
    st.sampled_from(["```", "```", "````", "~~~", "``", "~~~~"]),
    st.sampled_from(["", "", "bash", " sh", "yaml extra", "`x", "b\\ash", " ", "x`"]),
)
PLAIN = st.builds(lambda ind, t: " " * ind + t, st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6]), TEXT)
BLANK = st.sampled_from(["", "", "   "])
ODD = st.sampled_from(
    [
        "---",
        "***",
        "- - -",
        "===",
        "|---|",
        "| a |",
        "> quote",
        "    code",
        "\tcode",
        "[ref]: /url",
        "<div>",
        "-",
        "*",
        "1.",
        "a\u00a0b",
        "_ _ _",
    ]
)
# Weighted towards what the scanner reads, so most examples exercise it.
LINE = st.one_of(*[ITEM] * 10, *[HEADING] * 4, *[FENCE] * 8, *[PLAIN] * 8, *[BLANK] * 8, ODD)


@st.composite
def item_block(draw: st.DrawFn) -> list[str]:
    """A criterion as task files write it, its indentation and fences shifted a little."""
    marker = draw(st.sampled_from(["-", "*", "1.", "2)", "10."]))
    indent = draw(st.integers(0, 3))
    spaces = draw(st.integers(1, 4))
    lines = [" " * indent + marker + " " * spaces + draw(CONTENT)]
    prepend = indent + len(marker) + spaces
    for _ in range(draw(st.integers(0, 3))):
        shift = " " * max(0, prepend + draw(st.integers(-3, 3)))
        kind = draw(st.sampled_from(["fence", "fence", "nested", "text", "blank", "lazy"]))
        if kind == "fence":
            fence = draw(st.sampled_from(["```", "~~~", "````"]))
            lines.append(shift + fence + draw(st.sampled_from(["bash", "", "yaml"])))
            lines += [
                shift + " " * draw(st.integers(0, 3)) + w for w in draw(st.lists(TEXT, max_size=3))
            ]
            if draw(st.booleans()):
                lines.append(" " * max(0, prepend + draw(st.integers(-3, 4))) + fence)
        elif kind == "nested":
            lines.append(shift + "- " + draw(TEXT))
        elif kind == "text":
            lines.append(shift + draw(TEXT))
        elif kind == "blank":
            lines.append("")
        else:
            lines.append(draw(TEXT))
    return lines


def sum_lines(blocks: list[list[str]]) -> list[str]:
    return [line for block in blocks for line in block]


BLOCK = st.one_of(
    item_block(),
    item_block(),
    HEADING.map(lambda line: [line]),
    st.lists(PLAIN, min_size=1, max_size=3),
    BLANK.map(lambda line: [line]),
    st.lists(FENCE, min_size=1, max_size=2),
)


@settings(
    max_examples=EXAMPLES * 5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.one_of(st.lists(LINE, max_size=30), st.lists(BLOCK, max_size=12).map(sum_lines)))
def test_scanner_agrees_with_mistletoe_wherever_it_answers(body: list[str]) -> None:
    outline = fast_outline(body)
    if outline is not None:
        assert outline == mistletoe_outline(body)


def body_from(path: Path) -> list[str]:
    return body_of([strip_ending(line) for line in split_lines(decode(path, path.read_bytes()))])


@pytest.mark.parametrize(
    "path", sorted((ROOT / "example_tasks").glob("*.md")), ids=lambda p: p.name
)
def test_example_tasks_take_the_scanner(path: Path) -> None:
    body = body_from(path)
    outline = fast_outline(body)
    assert outline is not None
    assert outline == mistletoe_outline(body)
    assert outline.items and outline.fences


BACKLOG_BODY = """\
## Description

<!-- SECTION:DESCRIPTION:BEGIN -->
Build the images.
<!-- SECTION:DESCRIPTION:END -->

## Acceptance Criteria
<!-- AC:BEGIN -->
- [ ] #1 Build the image
  ```bash
  docker build .
  ```
  - a note under it
- [x] #2 Tag it
1. [ ] #3 Push it
   ```sh
     indented more
   ```
<!-- AC:END -->

## Progress Log
- 2024-01-15 14:30: Task created
"""


def test_backlog_file_is_scanned_like_mistletoe_reads_it() -> None:
    body = BACKLOG_BODY.splitlines()
    outline = fast_outline(body)
    assert outline is not None
    assert outline == mistletoe_outline(body)
    assert [line for line, _ in outline.items][:3] == [9, 14, 15]
    assert outline.items[2][1][0].script == "  indented more\n"


@pytest.mark.parametrize(
    "body",
    [
        ["> ```bash", "> rm -rf /", "> ```"],  # a fence inside a quote
        ["- [ ] a", "", "      ```bash", "      true", "      ```"],  # indented code
        ["Title", "====="],  # setext heading
        ["| a | b |", "|---|---|"],  # table
        ["## *Acceptance* Criteria"],  # inline markup in a heading
        ["- [ ] a", "\t```bash"],  # a tab
        ["- [ ] a", "  ```bash", "  true", " x | y", "  ---"],  # a table ends the item
    ],
    ids=["quote", "indented-code", "setext", "table", "markup-heading", "tab", "lazy-table"],
)
def test_scanner_steps_aside_for_markdown_it_does_not_read(body: list[str]) -> None:
    assert fast_outline(body) is None
    mistletoe_outline(body)  # and the reader still has an answer from mistletoe
