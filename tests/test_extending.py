"""Task types, handlers, fixtures and the extension hooks, end to end.

The conftest.py texts below are complete, working examples of extending
pytest-infratask from a team's own repository (docs/extending.md shows the same ones).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import QUIET, opt_in

pytest_plugins = ["pytester"]


def write_task(
    path: Path,
    meta: dict[str, Any],
    criteria: list[tuple[str, str | None]],
    box: dict[int, str] | None = None,
) -> Path:
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        "# A task",
        "",
        "## Acceptance Criteria",
        "",
    ]
    for number, (text, script) in enumerate(criteria, start=1):
        lines.append(f"- [{(box or {}).get(number, ' ')}] {text}")
        if script is not None:
            lines += ["  ```bash", *(f"  {line}" for line in script.splitlines()), "  ```"]
    lines += ["", "## Progress Log", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run the session; returns the result and TASK-001's output contract."""
    report_dir = pytester.path / "reports"
    result = pytester.runpytest(
        *QUIET, "--infratask-report-dir", str(report_dir), *opt_in(pytester.path, *args)
    )
    path = report_dir / "TASK-001.json"
    return result, json.loads(path.read_text()) if path.exists() else {}


def boxes(path: Path) -> list[str]:
    return [line[3] for line in path.read_text().splitlines() if line.startswith("- [")]


@pytest.fixture(autouse=True)
def _rootdir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makefile(".ini", pytest="[pytest]\n")
    for name in ("REGISTRY_URL", "VERSION"):
        monkeypatch.delenv(name, raising=False)


# -- 8. built-in types, handlers and fixtures ------------------------------------------


@pytest.mark.parametrize(
    ("labels", "task_type", "handler"),
    [
        (["builds"], "build", "BuildHandler"),
        (["flux"], "deployment", "DeploymentHandler"),
        (["networking"], "configuration", "ConfigurationHandler"),
        (["health"], "verification", "VerificationHandler"),
        (["docs"], "generic", "Handler"),
    ],
)
def test_labels_select_type_and_handler(
    pytester: pytest.Pytester, labels: list[str], task_type: str, handler: str
) -> None:
    write_task(pytester.path / "TASK-001.md", {"labels": labels}, [("Step", "true")])
    result, contract = run(pytester, "-m", task_type)
    result.assert_outcomes(passed=1)
    assert (contract["task_type"], contract["handler"]) == (task_type, handler)


def test_fixtures_are_listed_with_their_docstrings(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*QUIET, "--fixtures")
    out = result.stdout.str()
    for name, doc in [
        ("infratask_task", "The parsed task file"),
        ("infratask_handler", "The handler for the task's type"),
        ("infratask_safety", "The safety rules the task runs under"),
    ]:
        [line] = [i for i, text in enumerate(result.stdout.lines) if text.startswith(name)]
        assert doc in " ".join(result.stdout.lines[line + 1 : line + 3]), out


@pytest.mark.parametrize(
    "meta",
    [
        {"registry": "registry.local:5000", "version": "1.4.2"},
        {"env": {"REGISTRY_URL": "registry.local:5000", "VERSION": "1.4.2"}},
    ],
)
def test_build_handler_exports_registry_and_version(
    pytester: pytest.Pytester, meta: dict[str, Any]
) -> None:
    out = pytester.path / "out"
    write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["builds"], **meta},
        [("Tag", f'echo "$REGISTRY_URL/api:$VERSION" > {out}')],
    )
    result, contract = run(pytester)
    result.assert_outcomes(passed=1)
    assert out.read_text() == "registry.local:5000/api:1.4.2\n"
    assert contract["handler"] == "BuildHandler"


def test_conftest_wrapping_infratask_handler_is_used(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        textwrap.dedent('''
        import pytest
        from pytest_infratask.handlers import Handler


        class Audited(Handler):
            """Wrap whatever handler the task type chose; add an audit variable."""

            def __init__(self, inner):
                super().__init__(inner.task, inner.settings, inner.config)
                self.inner = inner

            @property
            def name(self):
                return f"Audited({self.inner.name})"

            def environment(self):
                return {**self.inner.environment(), "AUDIT_TICKET": "CHG-7"}


        @pytest.fixture(scope="module")
        def infratask_handler(infratask_handler):
            return Audited(infratask_handler)
    ''')
    )
    out = pytester.path / "out"
    write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["builds"], "registry": "reg.local"},
        [("Tag", f'echo "$AUDIT_TICKET $REGISTRY_URL" > {out}')],
    )
    result, contract = run(pytester)
    result.assert_outcomes(passed=1)
    assert out.read_text() == "CHG-7 reg.local\n"
    assert (contract["task_type"], contract["handler"]) == ("build", "Audited(BuildHandler)")


# -- 9. extending: a new task type with its own handler -------------------------------

DNS_CONFTEST = '''
from pytest_infratask.handlers import Handler


class DnsHandler(Handler):
    """DNS tasks: commands get the zone; every criterion must leave zone.db behind."""

    task_type = "dns"

    def environment(self):
        return {"DNS_ZONE": str(self.task.meta.get("zone", "example.internal"))}

    def after_criterion(self, step):
        if not (step.cwd / "zone.db").is_file():
            return ["zone.db is missing after the change"]
        return []


def pytest_infratask_task_type(task, config):
    if "dns" in task.labels:
        return "dns"
    return None  # let the built-in label table decide


def pytest_infratask_handler(task_type, task, config):
    if task_type == "dns":
        return DnsHandler.create(task, config)
    return None  # built-in handlers for the other types
'''


def test_new_task_type_with_its_own_handler(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(DNS_CONFTEST)
    zone = pytester.path / "zone.db"
    task = write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["dns"], "zone": "corp.internal"},
        [("Write the zone", 'echo "zone $DNS_ZONE" > zone.db'), ("Drop the zone", "rm zone.db")],
    )
    result, contract = run(pytester, "-m", "dns")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "post-condition failed: zone.db is missing after the change",
            "criterion: #2 Drop the zone",
        ]
    )
    assert not zone.exists()
    assert boxes(task) == ["x", " "]
    assert (contract["task_type"], contract["handler"]) == ("dns", "DnsHandler")
    assert contract["status"] == "partially_complete"
    assert "zone.db is missing after the change" in contract["message"]
    assert contract["completed_criteria"][0]["criterion"] == "Write the zone"


def test_new_type_environment_reaches_the_commands(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(DNS_CONFTEST)
    task = write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["dns"], "zone": "corp.internal"},
        [("Write the zone", 'echo "zone $DNS_ZONE" > zone.db')],
    )
    run(pytester)[0].assert_outcomes(passed=1)
    assert (pytester.path / "zone.db").read_text() == "zone corp.internal\n"
    assert boxes(task) == ["x"]


def test_other_labels_keep_the_builtin_types(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(DNS_CONFTEST)
    write_task(pytester.path / "TASK-001.md", {"labels": ["networking"]}, [("Step", "true")])
    result, contract = run(pytester)
    result.assert_outcomes(passed=1)
    assert (contract["task_type"], contract["handler"]) == ("configuration", "ConfigurationHandler")


def test_unknown_type_without_a_handler_falls_back_to_generic(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
def pytest_infratask_task_type(task, config):
    return "dns" if "dns" in task.labels else None
""")
    write_task(pytester.path / "TASK-001.md", {"labels": ["dns"]}, [("Step", "true")])
    result, contract = run(pytester)
    result.assert_outcomes(passed=1)
    assert (contract["task_type"], contract["handler"]) == ("dns", "Handler")


# -- 9. extending: safety checks and observers ------------------------------------------

NO_RM_RF_CONFTEST = '''
from pytest_infratask.core.results import CheckResult


def no_recursive_delete(target, safety):
    """Forbid ``rm -rf`` in any command block of any task."""
    for script in target.scripts:
        if "rm -rf" in script:
            return CheckResult(
                "no rm -rf", False, "rm -rf is not allowed in task files",
                "delete the files by name, or ask the platform team",
            )
    return CheckResult("no rm -rf", True, "no recursive delete")


def pytest_infratask_safety_checks(task, config):
    return [no_recursive_delete]
'''


def test_safety_check_from_a_conftest_blocks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NO_RM_RF_CONFTEST)
    victim = pytester.path / "victim"
    victim.mkdir()
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {}, [("Clean up", f"touch {marker}\nrm -rf {victim}")]
    )
    result, contract = run(pytester)
    result.assert_outcomes(failed=1)
    assert victim.is_dir() and not marker.exists()
    result.stdout.fnmatch_lines(
        [
            "*BLOCKED: no rm -rf: rm -rf is not allowed in task files*",
            "*delete the files by name, or ask the platform team*",
        ]
    )
    assert contract["status"] == "blocked"
    assert contract["recovery_suggestions"] == [
        "delete the files by name, or ask the platform team"
    ]


def test_safety_check_from_a_conftest_passes_other_commands(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NO_RM_RF_CONFTEST)
    marker = pytester.path / "marker"
    write_task(pytester.path / "TASK-001.md", {}, [("Touch", f"touch {marker}")])
    result, _ = run(pytester, "--infratask-dry-run")
    result.assert_outcomes(skipped=1)
    assert "no rm -rf: ok (no recursive delete)" in result.stdout.str()
    assert not marker.exists()


OBSERVER_CONFTEST = """
import json

from helpers import opt_in


def pytest_infratask_criterion_result(task, outcome, config):
    with open(config.rootpath / "outcomes.log", "a") as log:
        log.write(f"{task.id} #{outcome.number} {outcome.status.value}\\n")


def pytest_infratask_task_finished(task, contract, config):
    with open(config.rootpath / "finished.jsonl", "a") as log:
        log.write(json.dumps(contract) + "\\n")
"""


def test_observers_receive_every_outcome_and_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OBSERVER_CONFTEST)
    write_task(
        pytester.path / "TASK-001.md",
        {},
        [("Done before", "true"), ("Passes", "true"), ("Fails", "exit 3"), ("Check by hand", None)],
        box={1: "x"},
    )
    result, contract = run(pytester, "--infratask-retries", "0")
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    assert (pytester.path / "outcomes.log").read_text().splitlines() == [
        "TASK-001 #1 done",
        "TASK-001 #2 passed",
        "TASK-001 #3 failed",
        "TASK-001 #4 manual",
    ]
    [finished] = [
        json.loads(line) for line in (pytester.path / "finished.jsonl").read_text().splitlines()
    ]
    assert finished["task_id"] == "TASK-001"
    assert finished["criteria"] == {"total": 4, "completed": 2, "failed": 1, "remaining": 2}
    assert finished == contract


# -- 11. retry policy per task -----------------------------------------------------------


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (3, 4)])
def test_retries_from_the_frontmatter(
    pytester: pytest.Pytester, retries: int, attempts: int
) -> None:
    counter = pytester.path / "count"
    write_task(
        pytester.path / "TASK-001.md",
        {"retries": retries},
        [("Always fails", f"echo try >> {counter}\nexit 1")],
    )
    result, contract = run(pytester, "--infratask-retries", "1")
    result.assert_outcomes(failed=1)
    assert counter.read_text().count("try") == attempts
    assert contract["criteria_results"][0]["attempts"] == attempts
    assert f"after {attempts} attempt(s)" in result.stdout.str()


def test_retries_let_a_flaky_command_pass(pytester: pytest.Pytester) -> None:
    counter = pytester.path / "count"
    write_task(
        pytester.path / "TASK-001.md",
        {"retries": 3},
        [("Third time lucky", f'echo try >> {counter}\n[ "$(grep -c try {counter})" -ge 3 ]')],
    )
    result, contract = run(pytester)
    result.assert_outcomes(passed=1)
    assert counter.read_text().count("try") == 3
    assert contract["criteria_results"][0]["attempts"] == 3


def test_ini_retries_apply_without_frontmatter(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\ninfratask_retries = 2\n")
    counter = pytester.path / "count"
    write_task(
        pytester.path / "TASK-001.md", {}, [("Always fails", f"echo try >> {counter}\nexit 1")]
    )
    run(pytester)[0].assert_outcomes(failed=1)
    assert counter.read_text().count("try") == 3


# -- a bug in a handler is a bug, not a verdict on the task ------------------------------

BUGGY_HANDLER = textwrap.dedent("""
    from pytest_infratask import Handler

    class Buggy(Handler):
        task_type = "buggy"

        def after_criterion(self, step):
            return {}["missing"]  # a bug: KeyError

        def verify(self, cwd, env):
            raise TypeError("verify() of a buggy handler")

    def pytest_infratask_task_type(task, config):
        return "buggy" if "buggy" in task.labels else None

    def pytest_infratask_handler(task_type, task, config):
        return Buggy.create(task, config) if task_type == "buggy" else None
""")


def test_a_handler_bug_shows_its_traceback_and_fails_the_contract(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(BUGGY_HANDLER)
    task = write_task(pytester.path / "TASK-001.md", {"labels": ["buggy"]}, [("Step", "true")])
    result, contract = run(pytester)
    result.assert_outcomes(failed=1, skipped=1)  # ::verify waits for the open criterion
    out = result.stdout.str()
    assert "KeyError: 'missing'" in out
    assert 'return {}["missing"]  # a bug: KeyError' in out  # pytest's own traceback
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert contract["success"] is False
    (only,) = contract["criteria_results"]
    assert only["status"] == "failed"
    assert only["message"] == "internal error: KeyError: 'missing'"
    assert "a bug in the Buggy handler or the plugin" in contract["recovery_suggestions"][0]
    assert boxes(task) == [" "]
    assert "Failed #1: Step: internal error: KeyError: 'missing'" in task.read_text()


def test_a_bug_in_a_handlers_verify_fails_the_verify_item_with_its_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(BUGGY_HANDLER)
    write_task(
        pytester.path / "TASK-001.md", {"labels": ["buggy"]}, [("Step", "true")], box={1: "x"}
    )
    result, contract = run(pytester)
    result.assert_outcomes(skipped=1, failed=1)  # the ticked criterion is already done
    out = result.stdout.str()
    assert "TypeError: verify() of a buggy handler" in out
    assert 'raise TypeError("verify() of a buggy handler")' in out
    assert contract["success"] is False
    assert contract["verification"] == [
        {
            "check": "verification",
            "ok": False,
            "message": "internal error: TypeError: verify() of a buggy handler",
        }
    ]


def test_a_progress_line_that_cannot_be_written_fails_the_verdict(
    pytester: pytest.Pytester,
) -> None:
    """The Verification section makes the task file read-only: its "Verification passed"
    line cannot be written, and the verdict says so instead of dropping it."""
    task = write_task(pytester.path / "TASK-001.md", {"labels": ["docs"]}, [("Step", "true")])
    text = task.read_text().replace(
        "## Progress Log", "## Verification\n```bash\nchmod a-w TASK-001.md\n```\n\n## Progress Log"
    )
    task.write_text(text)
    result, contract = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert contract["success"] is False
    assert contract["error"] == "Write-back failed"
    assert "task file not updated" in contract["message"]
    assert "read-only" in contract["message"]
    assert "Verification passed" not in task.read_text()
    assert boxes(task) == ["x"]  # the criterion's own tick was written before


def test_any_exception_on_the_way_to_the_verdict_leaves_the_contract_failed(
    pytester: pytest.Pytester,
) -> None:
    """Not only a handler's checks: whatever raises while the verdict is decided (here
    the handler's contract fields, once) fails the task's contract as well as pytest."""
    pytester.makeconftest(
        textwrap.dedent("""
        from pytest_infratask import Handler

        class Fragile(Handler):
            task_type = "fragile"
            calls = 0

            def verify(self, cwd, env):
                return []

            def report(self):
                Fragile.calls += 1
                if Fragile.calls == 1:
                    raise RuntimeError("report() broke once")
                return {}

        def pytest_infratask_task_type(task, config):
            return "fragile" if "fragile" in task.labels else None

        def pytest_infratask_handler(task_type, task, config):
            return Fragile.create(task, config) if task_type == "fragile" else None
    """)
    )
    write_task(
        pytester.path / "TASK-001.md", {"labels": ["fragile"]}, [("Step", "true")], box={1: "x"}
    )
    result, contract = run(pytester)
    result.assert_outcomes(skipped=1, failed=1)
    assert "RuntimeError: report() broke once" in result.stdout.str()
    assert contract["success"] is False
    assert contract["verification"][-1] == {
        "check": "verification",
        "ok": False,
        "message": "internal error: RuntimeError: report() broke once",
    }
