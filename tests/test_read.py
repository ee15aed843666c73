"""read.py: which lines are criteria, what belongs to them, and exact line numbers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from helpers import encode, item, task_md

from pytest_infratask.core.task import Task
from pytest_infratask.read.taskfile import TaskFileError, parse_task

PATH = Path("/tasks/TASK-001.md")


def parse(text: str, newline: str = "\n", bom: bool = False) -> Task:
    return parse_task(PATH, encode(text, newline=newline, bom=bom))


BACKLOG = """\
---
id: task-12
title: Build images
status: In Progress
created_date: '2024-01-10 09:00'
updated_date: '2024-01-15 14:30'
labels:
  - container-builds
dependencies: [task-3]
---

## Description

<!-- SECTION:DESCRIPTION:BEGIN -->
Build the images.
<!-- SECTION:DESCRIPTION:END -->

## Acceptance Criteria
<!-- AC:BEGIN -->
- [ ] #1 Build the image
  ```bash
  echo built
  ```
- [x] #2 Tag it
- [ ] #3 Push it
<!-- AC:END -->
"""


def test_backlog_format_numbers_ids_and_labels() -> None:
    task = parse(BACKLOG)
    assert task.id == "task-12"
    assert task.title == "Build images"
    assert task.labels == ("container-builds",)
    assert task.dependencies == ("task-3",)
    assert [(c.number, c.text, c.box) for c in task.criteria] == [
        (1, "Build the image", " "),
        (2, "Tag it", "x"),
        (3, "Push it", " "),
    ]
    assert task.criteria[0].line == 20
    assert task.criteria[0].commands[0].script == "echo built\n"
    assert [c.name for c in task.criteria] == ["ac1-build-the-image", "ac2-tag-it", "ac3-push-it"]


def test_backlog_numbers_are_kept_even_when_out_of_order() -> None:
    """Backlog numbers survive reordering, so a criterion keeps its identity."""
    task = parse(BACKLOG.replace("#1 Build", "#7 Build"))
    assert [c.number for c in task.criteria] == [7, 2, 3]


def test_mixed_numbering_falls_back_to_positions() -> None:
    task = parse(task_md(item("#5 numbered"), item("not numbered")))
    assert [(c.number, c.text) for c in task.criteria] == [(1, "#5 numbered"), (2, "not numbered")]


def test_duplicate_backlog_number_is_an_error_with_its_line() -> None:
    with pytest.raises(TaskFileError) as err:
        parse(BACKLOG.replace("#3 Push", "#1 Push"))
    assert err.value.line == 25
    assert "numbered twice" in err.value.message


def test_checkboxes_in_fences_and_other_sections_are_not_criteria() -> None:
    text = task_md(
        item("Real one", "echo real"),
        after_ac="""
        ## Notes

        - [ ] a note, not a criterion

        ```markdown
        - [ ] example inside a fence
        ```
        """,
    )
    text = text.replace("# Demo task\n", "# Demo task\n\n- [ ] before the section\n")
    task = parse(text)
    assert [c.text for c in task.criteria] == ["Real one"]


def test_fenced_example_inside_the_section_is_not_a_criterion() -> None:
    text = task_md(item("Real one", "echo real"), "```\n- [ ] fenced example\n```")
    assert [c.text for c in parse(text).criteria] == ["Real one"]


@pytest.mark.parametrize("marker", ["-", "*", "+", "1.", "1)"])
def test_list_markers(marker: str) -> None:
    second = "2." if marker == "1." else "2)" if marker == "1)" else marker
    text = task_md(item("first", "echo 1", marker=marker), item("second", marker=second))
    task = parse(text)
    assert [(c.number, c.text) for c in task.criteria] == [(1, "first"), (2, "second")]
    assert task.criteria[0].commands[0].script == "echo 1\n"


def test_unusual_box_keeps_its_number_and_is_neither_open_nor_done() -> None:
    task = parse(
        task_md(item("one"), item("wont do", box="~"), item("three"), item("four", box="X"))
    )
    assert [c.number for c in task.criteria] == [1, 2, 3, 4]
    wont = task.criteria[1]
    assert (wont.open, wont.done) == (False, False)
    assert task.criteria[3].done
    assert [c.number for c in task.open_criteria] == [1, 3]


def test_nested_sub_items_belong_to_their_parent() -> None:
    text = task_md(
        "- [ ] Parent\n"
        "  ```bash\n  echo parent\n  ```\n"
        "  - [ ] child step\n"
        "    ```bash\n    echo child\n    ```\n"
        "  - plain sub bullet\n"
        "- [ ] Sibling\n"
    )
    task = parse(text)
    assert [c.text for c in task.criteria] == ["Parent", "Sibling"]
    assert [b.script for b in task.criteria[0].commands] == ["echo parent\n", "echo child\n"]


@pytest.mark.parametrize("lang", ["yaml", "json", "text", "python", "console"])
def test_non_shell_blocks_are_content_not_commands(lang: str) -> None:
    task = parse(task_md(item("Config", "key: value", lang=lang)))
    criterion = task.criteria[0]
    assert criterion.blocks[0].language == lang
    assert criterion.commands == ()
    assert criterion.manual


@pytest.mark.parametrize("lang", ["", "bash", "sh", "shell", "BASH"])
def test_shell_blocks_are_commands(lang: str) -> None:
    assert not parse(task_md(item("Run", "true", lang=lang))).criteria[0].manual


def test_independent_and_needs_annotations() -> None:
    task = parse(
        task_md(
            item("a"),
            item("b <!-- independent -->"),
            item("c <!-- needs: #1, #2 -->"),
            item("d <!--needs #2-->"),
        )
    )
    a, b, c, d = task.criteria
    assert (a.independent, a.needs) == (False, None)
    assert (b.independent, b.text) == (True, "b")
    assert (c.needs, c.text) == ((1, 2), "c")
    assert d.needs == (2,)
    assert c.name == "ac3-c"


def test_unicode_text_and_slug() -> None:
    task = parse(task_md(item("Déployer le service ✓ — `nginx` 日本")))
    criterion = task.criteria[0]
    assert criterion.text == "Déployer le service ✓ — `nginx` 日本"
    assert criterion.name.startswith("ac1-d")
    assert " " not in criterion.name


def test_crlf_and_bom_keep_line_numbers() -> None:
    text = task_md(item("one", "echo 1"), item("two"))
    lf = parse(text)
    crlf = parse(text, newline="\r\n", bom=True)
    assert crlf.newline == "\r\n" and lf.newline == "\n"
    assert [c.line for c in crlf.criteria] == [c.line for c in lf.criteria]
    assert crlf.criteria[0].raw_line == "- [ ] one"
    assert crlf.id == "TASK-001"
    assert crlf.criteria[0].commands[0].script == "echo 1\n"


def test_line_numbers_count_the_frontmatter() -> None:
    text = task_md(item("one"))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t == "- [ ] one")
    assert parse(text).criteria[0].line == line


def test_bad_yaml_points_at_the_line() -> None:
    text = "---\nid: TASK-001\ntitle: ok\nlabels: [a, b\nstatus: x\n---\n\n## Acceptance Criteria\n"
    with pytest.raises(TaskFileError) as err:
        parse(text)
    assert err.value.path == PATH
    assert err.value.line == 5  # where YAML noticed the unclosed list
    assert "invalid YAML frontmatter" in err.value.message
    assert str(err.value).startswith(f"{PATH}:{err.value.line}: ")


def test_yaml_error_line_is_exact() -> None:
    text = "---\nid: TASK-001\ntitle: ok\nbad: : :\n---\n"
    with pytest.raises(TaskFileError) as err:
        parse(text)
    assert err.value.line == 4


def test_unclosed_frontmatter() -> None:
    with pytest.raises(TaskFileError, match="never closed") as err:
        parse("---\nid: TASK-001\n\n## Acceptance Criteria\n")
    assert err.value.line == 1


def test_frontmatter_must_be_a_mapping() -> None:
    with pytest.raises(TaskFileError, match="mapping"):
        parse("---\n- a\n- b\n---\n")


def test_invalid_utf8_names_the_line() -> None:
    data = encode(task_md(item("one"))).replace(b"one", b"on\xff")
    line = data.split(b"\n").index(b"- [ ] on\xff") + 1
    with pytest.raises(TaskFileError) as err:
        parse_task(PATH, data)
    assert err.value.line == line
    assert "UTF-8" in err.value.message


def test_no_frontmatter_uses_heading_and_file_name() -> None:
    task = parse("# Title from heading\n\n## Acceptance Criteria\n\n- [ ] one\n")
    assert (task.id, task.title, task.priority) == ("TASK-001", "Title from heading", "medium")
    assert [c.text for c in task.criteria] == ["one"]


def test_no_acceptance_criteria_section_means_no_criteria() -> None:
    assert parse("---\nid: T-1\n---\n# T\n\n- [ ] loose\n").criteria == ()


def test_dependencies_from_frontmatter_and_section() -> None:
    text = task_md(
        item("one"),
        meta="id: TASK-009\ndependencies: TASK-001, TASK-002",
        after_ac="""
        ## Dependencies

        - TASK-003 (network)
        - TASK-001 again
        """,
    )
    assert parse(text).dependencies == ("TASK-001", "TASK-002", "TASK-003")


def test_progress_log_verification_env_and_timeout() -> None:
    text = task_md(
        item("one"),
        meta="id: T-1\ntimeout: 5\nenv:\n  A: 1\n  B:\nlabels: a, b",
        log=["2024-01-01 09:00: created", "2024-01-02 10:00: more"],
        after_ac="""
        ## Verification

        ```bash
        echo verify
        ```
        """,
    )
    task = parse(text)
    assert task.progress_log == ("2024-01-01 09:00: created", "2024-01-02 10:00: more")
    assert [b.script for b in task.verification] == ["echo verify\n"]
    assert task.env == {"A": "1", "B": ""}
    assert task.timeout == 5.0
    assert task.labels == ("a", "b")


@pytest.mark.parametrize(
    "data",
    [b"", b"---\n", b"---\n---\n", b"\xef\xbb\xbf", b"- [ ]", b"## Acceptance Criteria\n- [ ]\n"],
)
def test_degenerate_files_parse_or_raise_task_file_error(data: bytes) -> None:
    """Anything else would surface as an internal error instead of a collection error."""
    with contextlib.suppress(TaskFileError):
        parse_task(PATH, data)


def test_lists_nested_past_the_recursion_limit_are_a_task_file_error() -> None:
    body = "\n".join("  " * i + "- [ ] step" for i in range(500))
    with pytest.raises(TaskFileError, match="nested too deeply"):
        parse("---\nid: TASK-001\n---\n## Acceptance Criteria\n" + body + "\n")


def test_documented_keys_never_warn(pytester: pytest.Pytester) -> None:
    """Every key the docs name is known: ``secrets`` and ``registry_auth_file``
    under ``-W error`` for unknown keys collect cleanly."""
    (pytester.path / "TASK-001.md").write_text(
        task_md(
            item("Say hi", "echo hi"),
            meta="id: TASK-001\nsecrets: [DB_PASS]\nregistry_auth_file: auth.json",
        )
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--co", "-q",
        "-W", "error::pytest_infratask.core.schema.UnknownKeyWarning", "TASK-001.md",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*TASK-001.md::*say-hi*"])
