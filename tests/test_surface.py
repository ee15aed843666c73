"""The extension surface: handlers as a Protocol, one per task, the built-in hook
implementations, and pytest internals reached only through compat.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import QUIET, item, opt_in, task_md, write_task

import pytest_infratask

pytest_plugins = ["pytester"]

PACKAGE = Path(pytest_infratask.__file__).parent


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makefile(".ini", pytest="[pytest]\ninfratask_retry_delay = 0\n")
    reports = pytester.path / "reports"
    return pytester.runpytest(
        *QUIET, f"--infratask-report-dir={reports}", *opt_in(pytester.path, *args)
    )


def _contract(pytester: pytest.Pytester, task_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "reports" / f"{task_id}.json").read_text())
    return data


COUNTING_CONFTEST = """
from pytest_infratask import CheckResult, Handler


class Counting(Handler):
    task_type = "counted"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with open(self.task.path.parent / "built.log", "a") as log:
            log.write(self.task.id + "\\n")
        self.ticked = []

    def after_criterion(self, step):
        self.ticked.append(step.criterion.number)
        return []

    def verify(self, cwd, env):
        return [CheckResult("state", self.ticked == [1, 2], f"ticked {self.ticked}")]


def pytest_infratask_task_type(task, config):
    return "counted"


def pytest_infratask_handler(task_type, task, config):
    if task_type == "counted":
        return Counting.create(task, config)
"""


def test_one_handler_per_task_whose_criteria_state_reaches_verify(
    pytester: pytest.Pytester,
) -> None:
    """Collection and the run share one instance: what ``after_criterion`` kept is
    what ``verify`` sees, and ``__init__`` ran once per task."""
    pytester.makeconftest(COUNTING_CONFTEST)
    for task_id in ("TASK-001", "TASK-002"):
        write_task(
            pytester.path,
            f"{task_id}.md",
            task_md(item("One", "true"), item("Two", "true"), meta=f"id: {task_id}\ntitle: T"),
        )
    result = _run(pytester)
    result.assert_outcomes(passed=6)
    assert sorted((pytester.path / "built.log").read_text().split()) == ["TASK-001", "TASK-002"]
    for task_id in ("TASK-001", "TASK-002"):
        contract = _contract(pytester, task_id)
        assert contract["handler"] == "Counting"
        check = {"check": "state", "ok": True, "message": "ticked [1, 2]"}
        assert check in contract["verification"]


@pytest.mark.parametrize(
    ("returned", "missing"),
    [
        ('"generic"', "name, retries, secrets, auth_file, environment"),
        ("Partial()", "missing: report, next_steps"),
    ],
)
def test_a_handler_hook_returning_a_non_handler_is_a_collection_error(
    pytester: pytest.Pytester, returned: str, missing: str
) -> None:
    conftest = pytester.makeconftest(
        f'''
        from pytest_infratask import Handler


        class Partial:
            """A handler in all but its report: not a TaskHandler."""

            name, retries, secrets, auth_file = "Partial", None, set(), None
            environment = uses_cluster = after_criterion = verify = Handler.verify
            after_publish = has_task_checks = Handler.has_task_checks


        def pytest_infratask_handler(task_type, task, config):
            return {returned}
        '''
    )
    marker = pytester.path / "ran"
    write_task(pytester.path, "TASK-001.md", task_md(item("Touch", f"touch {marker}")))
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert f"pytest_infratask_handler in {conftest} returned " in out
    assert "for task type 'generic', which is not a handler" in out
    assert missing in out
    assert "AttributeError" not in out
    assert not marker.exists()


ORDER_CONFTEST = """
import json

from pytest_infratask import CheckResult


def team_check(target, safety):
    with open(target.task.path.parent / "checks.json", "w") as out:
        json.dump([check.__name__ for check in safety.checks], out)
    return CheckResult("team", True, "fine")


def pytest_infratask_safety_checks(task, config):
    return [team_check]


def pytest_configure(config):
    builtin = config.pluginmanager.get_plugin("infratask-builtin")
    hooks = [
        name for name in ("pytest_infratask_safety_checks", "pytest_infratask_security_rules",
                          "pytest_infratask_frontmatter_keys", "pytest_infratask_handler")
        if any(impl.plugin is builtin for impl in getattr(config.hook, name).get_hookimpls())
    ]
    (config.rootpath / "builtin.json").write_text(json.dumps(hooks))
"""


def test_a_conftest_safety_check_runs_after_the_builtin_hook_implementations(
    pytester: pytest.Pytester,
) -> None:
    from pytest_infratask.guard.checks import BUILTIN_CHECKS

    pytester.makeconftest(ORDER_CONFTEST)
    write_task(pytester.path, "TASK-001.md", task_md(item("Works", "true")))
    _run(pytester).assert_outcomes(passed=1)
    names = json.loads((pytester.path / "checks.json").read_text())
    assert names == [*(check.__name__ for check in BUILTIN_CHECKS), "team_check"]
    assert json.loads((pytester.path / "builtin.json").read_text()) == [
        "pytest_infratask_safety_checks",
        "pytest_infratask_security_rules",
        "pytest_infratask_frontmatter_keys",
        "pytest_infratask_handler",
    ]


def test_a_failing_builtin_check_blocks_before_a_failing_team_check(
    pytester: pytest.Pytester,
) -> None:
    """The first failed check blocks: a built-in one, as they run first."""
    pytester.makeconftest(
        """
        from pytest_infratask import CheckResult


        def pytest_infratask_safety_checks(task, config):
            return [lambda target, safety: CheckResult("team", False, "team says no")]
        """
    )
    write_task(pytester.path, "TASK-001.md", task_md(item("Apply", "kubectl apply -f x.yaml")))
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    assert "team says no" not in str(_contract(pytester, "TASK-001")["message"])
    assert "BLOCKED: kube context: the task reaches a cluster" in result.stdout.str()


def test_every_hookspec_is_declared_with_a_docstring_body() -> None:
    """As pluggy writes them: decorated, documented, no default result of their own."""
    tree = ast.parse((PACKAGE / "hookspecs.py").read_text())
    specs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert len(specs) == 7
    for spec in specs:
        assert spec.decorator_list, spec.name
        assert ast.get_docstring(spec) and ":param" in ast.get_docstring(spec), spec.name
        assert len(spec.body) == 1, f"{spec.name} has a body beyond its docstring"


PRIVATE_OWNERS = {"config", "item", "session", "node", "request", "reporter", "option",
                  "pluginmanager", "parent", "report", "terminalreporter"}  # fmt: skip
XDIST_ATTRIBUTES = {"workerinput", "workeroutput", "loadscopereorder", "dist"}


def _private_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            found += [f"imports {n}" for n in names if n.split(".")[0] == "_pytest"]
        elif isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if name in PRIVATE_OWNERS and (private or node.attr in XDIST_ATTRIBUTES):
                found.append(f"{name}.{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr"):
            literal = node.args[1] if len(node.args) > 1 else None
            if isinstance(literal, ast.Constant) and literal.value in XDIST_ATTRIBUTES:
                found.append(f"{node.func.id}(..., {literal.value!r})")  # type: ignore[attr-defined]
    return found


def test_only_compat_reaches_pytest_and_xdist_internals() -> None:
    """Version-specific or private pytest (and xdist) use lives in compat.py alone."""
    found = {
        str(path.relative_to(PACKAGE)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "compat.py" and (uses := _private_uses(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_private_use_check_sees_each_form() -> None:
    source = (
        "from _pytest.mark import KeywordMatcher\n"
        "import _pytest.nodes\n"
        "item._fixtureinfo\n"
        "config.option.dist\n"
        "getattr(config, 'workerinput', None)\n"
        "self._private\n"
    )
    assert sorted(_private_uses(ast.parse(source))) == [
        "getattr(..., 'workerinput')",
        "imports _pytest.mark",
        "imports _pytest.nodes",
        "item._fixtureinfo",
        "option.dist",
    ]
