"""Backlog.md trees as Backlog.md reads them (config.yml, ids), criteria found by their
words with ``-k``, and nothing in a task file passed over without a located warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import QUIET, item, task_md

from pytest_infratask.plan.dependencies import dependency_states, order_tasks
from pytest_infratask.plan.pending import pending_tasks
from pytest_infratask.read.backlog import id_key, resolve
from pytest_infratask.read.taskfile import read_task

BACKLOG_MD = Path(__file__).parent / "backlog_corpus" / "backlog_md"
"""A subset of Backlog.md's own task tree (``task_prefix: "back"``), unchanged."""
SCHEMA = "pytest_infratask.core.schema"


def _tree(root: Path, prefix: str | None = None, statuses: str = "") -> Path:
    backlog = root / "backlog"
    (backlog / "tasks").mkdir(parents=True, exist_ok=True)
    lines = [f'task_prefix: "{prefix}"'] if prefix else []
    lines += [f"statuses: [{statuses}]"] if statuses else []
    (backlog / "config.yml").write_text('project_name: "demo"\n' + "\n".join(lines) + "\n")
    return backlog / "tasks"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line]


def _warned(result: pytest.RunResult, path: Path, line: int, category: str, text: str) -> None:
    """The warning, located at the file and line, in pytest's warnings summary."""
    text = text.replace("[", "[[]")  # a box is a character class to fnmatch
    result.stdout.fnmatch_lines([f"*{path}:{line}: {category}: {text}*"])


# -- config.yml: the task prefix and the statuses ---------------------------------------


def test_a_custom_task_prefix_collects_its_files_from_the_directory(
    pytester: pytest.Pytester,
) -> None:
    tasks = _tree(pytester.path, "back")
    _write(tasks / "back-1 - First.md", task_md(item("Step one", "true"), meta="id: BACK-1"))
    _write(tasks / "back-1.1 - Sub.md", task_md(item("Step sub", "true"), meta="id: BACK-1.1"))
    _write(tasks / "notes.md", task_md(item("Not a task", "true"), meta="id: NOTES"))
    result = pytester.runpytest(*QUIET, "--co", "-q", "backlog")
    assert _collected(result) == [
        "backlog/tasks/back-1 - First.md::ac1-step-one",
        "backlog/tasks/back-1.1 - Sub.md::ac1-step-sub",
    ], result.stdout.str()
    pending, errors = pending_tasks([pytester.path / "backlog"])  # the task scanner too
    assert [t.id for t in pending] == ["BACK-1", "BACK-1.1"] and not errors
    (pytester.path / "backlog" / "config.yml").write_text('project_name: "demo"\n')
    assert _collected(pytester.runpytest(*QUIET, "--co", "-q", "backlog")) == []


def test_the_last_configured_status_satisfies_a_dependency(tmp_path: Path) -> None:
    tasks = _tree(tmp_path, statuses='"To Do", "Doing", "Shipped"')
    _write(tasks / "task-1 - Made.md", "---\nid: task-1\nstatus: Shipped\n---\n# Made\n")
    _write(tasks / "task-2 - Half.md", "---\nid: task-2\nstatus: Doing\n---\n# Half\n")
    waiting = _write(tasks / "task-3.md", "---\nid: task-3\ndependencies: [1, 2]\n---\n")
    states = dependency_states(read_task(waiting), [])
    assert [(s.task_id, s.found, s.satisfied) for s in states] == [
        ("task-1", True, True),
        ("task-2", True, False),
    ]


# -- dependency ids, as Backlog.md resolves them -----------------------------------------


@pytest.mark.parametrize(
    ("written", "prefix", "full"),
    [
        ("100.13", "task", "task-100.13"),
        ("7", "back", "back-7"),
        ("TASK-100.13", "back", "TASK-100.13"),
        ("task-epic-11.139.4", "task", "task-epic-11.139.4"),
        ("jira-12", "task", "jira-12"),
    ],
)
def test_a_bare_number_takes_the_prefix_and_any_other_id_stays(
    written: str, prefix: str, full: str
) -> None:
    assert resolve(written, prefix) == full


def test_ids_compare_whatever_their_case_and_leading_zeros() -> None:
    assert id_key("TASK-7.01") == id_key("task-7.1") == id_key("7.1")
    assert id_key("task-epic-11.139.4") == id_key("TASK-EPIC-11.139.4")
    assert id_key("task-7") != id_key("back-7") != id_key("task-7.1")


def test_dependencies_resolve_in_frontmatter_and_section(tmp_path: Path) -> None:
    tasks = _tree(tmp_path)
    path = _write(
        tasks / "task-9.md",
        "---\nid: task-9\ndependencies: ['100.13', TASK-8]\n---\n# Nine\n\n"
        "## Dependencies\n\n- task-epic-11.139.4, 12 and back-3\n"
        "- `task-8` (already listed above)\n"
        "- the DNS team signs off\n\nAfter task-5 is merged.\n",
    )
    task = read_task(path)
    assert task.dependencies == ("task-100.13", "TASK-8", "task-epic-11.139.4", "task-12", "back-3")
    notes = [(n.line, n.category.__name__) for n in task.notices]
    assert notes == [(11, "DependencyTextWarning"), (13, "DependencyTextWarning")]
    deps = [
        _write(tasks / "task-100.13.md", "---\nid: TASK-100.13\n---\n"),
        _write(tasks / "task-08.md", "---\nid: task-08\n---\n"),
        _write(tasks / "task-epic-11.139.4 - Epic.md", "---\nid: task-epic-11.139.4\n---\n"),
        _write(tasks / "task-12.md", "---\nid: task-12\n---\n"),
        _write(tasks / "back-3 - Other prefix.md", "---\nid: BACK-3\n---\n"),
    ]
    ordered = order_tasks([task, *map(read_task, deps)])
    assert [t.id for t in ordered][-1] == "task-9"
    assert all(s.found for s in dependency_states(task, []))


def test_prose_under_dependencies_warns_at_its_line(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        task_md(item("Step", "true"), meta="id: TASK-1")
        + "\n## Dependencies\n\n- the DNS team signs off\n",
    )
    line = path.read_text().splitlines().index("- the DNS team signs off") + 1
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(result, path, line, "DependencyTextWarning", "'the DNS team signs off' under *")
    strict = pytester.runpytest(*QUIET, "-W", f"error::{SCHEMA}.DependencyTextWarning", str(path))
    assert strict.ret == pytest.ExitCode.INTERRUPTED


# -- the AC:BEGIN block, and Backlog.md's keys --------------------------------------------

_TWO_SECTIONS = """\
---
id: task-1
status: To Do
created_date: '2025-01-01 10:00'
completed_date: '2025-01-02 10:00'
---

## Description

<!-- SECTION:DESCRIPTION:BEGIN -->
Copied from the ticket.

### Acceptance Criteria
- [ ] Draft wording, not a criterion
<!-- SECTION:DESCRIPTION:END -->

## Acceptance Criteria
<!-- AC:BEGIN -->
- [ ] #1 The real one
  ```bash
  true
  ```
<!-- AC:END -->
"""


def test_the_ac_block_wins_over_another_acceptance_criteria_heading(
    pytester: pytest.Pytester,
) -> None:
    path = _write(pytester.path / "task-1.md", _TWO_SECTIONS)
    assert [c.text for c in read_task(path).criteria] == ["The real one"]
    strict = ("-W", f"error::{SCHEMA}.UnknownKeyWarning")  # completed_date is Backlog.md's
    pytester.runpytest(*QUIET, *strict, str(path)).assert_outcomes(passed=1)
    text = path.read_text()
    assert "- [x] #1 The real one" in text and "- [ ] Draft wording" in text


def test_an_unknown_key_warns_at_its_line(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        task_md(item("Step", "true"), meta="id: TASK-1\ntitle: T\ncompleted_dat: 2025-01-01"),
    )
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(
        result,
        path,
        4,
        "UnknownKeyWarning",
        "unknown frontmatter key 'completed_dat'; did you mean 'completed_date'?",
    )


# -- -k on the words of a criterion -------------------------------------------------------

_LONG = (
    "The rollout finishes within the maintenance window and every replica reports "
    "ready before the load balancer drains the old pool entirely, zwischenzeitlich"
)


@pytest.mark.parametrize(
    ("word", "wanted"),
    [
        ("zwischenzeitlich", "ac1-"),
        ("simultáneamente", "ac2-"),
        ("SIMULTÁNEAMENTE", "ac2-"),
        ("测试中文", "ac3-"),
    ],
)
def test_any_word_of_a_criterion_selects_it(
    pytester: pytest.Pytester, word: str, wanted: str
) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        task_md(
            item(_LONG, "true"),
            item("Ambos nodos arrancan simultáneamente", "true"),
            item("界面显示 测试中文 正确", "true"),
            meta="id: TASK-1",
        ),
    )
    result = pytester.runpytest(*QUIET, "--co", "-q", "-k", word, str(path))
    chosen = _collected(result)
    assert len(chosen) == 1 and f"::{wanted}" in chosen[0], result.stdout.str()


# -- nothing passed over in silence --------------------------------------------------------


def test_a_fence_at_the_margin_after_a_criterion_warns(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        task_md("- [ ] Restart the service\n```bash\ntrue\n```", meta="id: TASK-1"),
    )
    line = path.read_text().splitlines().index("```bash") + 1
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(
        result, path, line, "DetachedBlockWarning",
        f"the code block on line {line} follows criterion #1 (line {line - 1}) but is not "
        "indented under it, so #1 has no command and is manual*",
    )  # fmt: skip
    strict = pytester.runpytest(*QUIET, "-W", f"error::{SCHEMA}.DetachedBlockWarning", str(path))
    assert strict.ret == pytest.ExitCode.INTERRUPTED
    attached = task_md(
        item("Restart the service", "true"),
        "* [ ] Then check it",
        meta="id: T",
        after_ac="### Example\n\n```bash\nfalse\n```",
    )
    path.write_text(attached)
    fine = pytester.runpytest(*QUIET, "-W", f"error::{SCHEMA}.InfrataskWarning", str(path))
    fine.assert_outcomes(passed=1, skipped=1)


@pytest.mark.parametrize("line_text", ["- [] Check the DNS", "-[ ] Check the DNS", "- [ x] Done"])
def test_a_near_miss_box_warns(pytester: pytest.Pytester, line_text: str) -> None:
    path = _write(
        pytester.path / "TASK-1.md", task_md(item("Step", "true"), line_text, meta="id: TASK-1")
    )
    line = path.read_text().splitlines().index(line_text) + 1
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(
        result, path, line, "NearMissCheckboxWarning", f"{line_text!r} is not a checklist item*"
    )
    category = f"error::{SCHEMA}.NearMissCheckboxWarning"
    assert pytester.runpytest(*QUIET, "-W", category, str(path)).ret == 2


def test_a_checklist_under_another_heading_warns(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        "---\nid: TASK-1\n---\n# T\n\n## Checklist\n\n- [ ] Rotate the key\n",
    )
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(
        result,
        path,
        8,
        "NearMissCheckboxWarning",
        "a checklist item under 'Checklist' is no criterion*",
    )
    category = f"error::{SCHEMA}.NearMissCheckboxWarning"
    assert pytester.runpytest(*QUIET, "-W", category, str(path)).ret == 2


@pytest.mark.parametrize(
    ("body", "line", "why"),
    [
        ("# T\n\nJust notes.\n", 1, "it has no '## Acceptance Criteria' section*"),
        ("# T\n\n## Acceptance Criteria\n\nNone yet.\n", 6, "its acceptance criteria*"),
    ],
)
def test_a_named_file_without_criteria_says_why(
    pytester: pytest.Pytester, body: str, line: int, why: str
) -> None:
    path = _write(pytester.path / "TASK-1.md", "---\nid: TASK-1\n---\n" + body)
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(result, path, line, "NoCriteriaWarning", f"no item from this file: {why}")
    category = f"error::{SCHEMA}.NoCriteriaWarning"
    assert pytester.runpytest(*QUIET, "-W", category, str(path)).ret == 2
    other = _write(pytester.path / "tasks" / "TASK-2.md", "---\nid: TASK-2\n---\n" + body)
    quiet = pytester.runpytest(*QUIET, "-W", category, "--co", str(other.parent))
    assert quiet.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # a directory's files: no warning


def test_a_misspelt_label_warns_with_the_type_it_meant(pytester: pytest.Pytester) -> None:
    path = _write(
        pytester.path / "TASK-1.md",
        task_md(item("Step", "true"), meta="id: TASK-1\nlabels: [deplyoment]\nvalidate: [k8s]"),
    )
    result = pytester.runpytest(*QUIET, "--co", str(path))
    _warned(
        result, path, 3, "UnknownLabelWarning",
        "label 'deplyoment' chooses no task type; did you mean 'deployment'? "
        "The task runs as generic, not deployment*",
    )  # fmt: skip
    category = f"error::{SCHEMA}.UnknownLabelWarning"
    assert pytester.runpytest(*QUIET, "-W", category, "--co", str(path)).ret == 2
    path.write_text(path.read_text().replace("[deplyoment]", "[deployment, frontend]"))
    assert pytester.runpytest(*QUIET, "-W", category, "--co", str(path)).ret == 0


# -- Backlog.md's own tree ---------------------------------------------------------------


@pytest.fixture
def backlog_md(pytester: pytest.Pytester) -> Path:
    shutil.copytree(BACKLOG_MD / "backlog", pytester.path / "backlog")
    return pytester.path / "backlog"


def test_backlog_md_s_own_tree_collects_every_task_file(
    pytester: pytest.Pytester, backlog_md: Path
) -> None:
    strict = ("-W", f"error::{SCHEMA}.UnknownKeyWarning")
    events = pytester.inline_run(*QUIET, *strict, "--co", "backlog")
    assert events.ret == pytest.ExitCode.OK
    modules = [
        Path(str(r.fspath)).name
        for r in events.getreports("pytest_collectreport")
        if r.passed and r.nodeid.endswith(".md")
    ]
    files = sorted(p.name for p in (backlog_md / "tasks").glob("back-*.md"))
    assert sorted(modules) == files  # also those without criteria; none set aside
    assert len(events.getcalls("pytest_itemcollected")) == 54


@pytest.mark.parametrize(
    ("word", "wanted"),
    [
        ("obscuring", "back-222 - Improve-task-and-subtask-visualization-in-web-UI.md::ac4-"),
        ("测试中文", "back-236 - Fix-TUI-Unicode-rendering-for-CJK-(Chinese-shows-as-).md::ac4-"),
    ],
)
def test_backlog_md_s_own_criteria_are_found_by_their_words(
    pytester: pytest.Pytester, backlog_md: Path, word: str, wanted: str
) -> None:
    completed = next((backlog_md / "completed").glob("back-236 *.md"))
    result = pytester.runpytest(*QUIET, "--co", "-q", "-k", word, "backlog", str(completed))
    chosen = _collected(result)
    assert len(chosen) == 1 and wanted in chosen[0], result.stdout.str()
