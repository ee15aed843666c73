"""pytest's side of the reports: json-report metadata, JUnit, the terminal summary, and
the contracts' way from xdist workers to the controller."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_infratask import compat
from pytest_infratask.compat import count_as_last_failed, terminal_writer
from pytest_infratask.core.verdict import HELD_BACK
from pytest_infratask.report.store import contracts
from pytest_infratask.report.summary import delivery
from pytest_infratask.workers import forget_run, remember_session, worker_output

if TYPE_CHECKING:
    from pytest_infratask.items import VerifyItem


RUNS_KEY = pytest.StashKey[set[str]]()


JsonReport = dict[str, Any]
"""pytest-json-report's report, handed to its hook: untyped, any shape."""
WORKER_KEY = "infratask_contracts"


def modify_json_report(config: pytest.Config, json_report: JsonReport) -> None:
    json_report["infratask"] = {"tasks": list(contracts(config).values())}


def runtest_metadata(item: pytest.Item, call: pytest.CallInfo[None]) -> dict[str, object] | None:
    # start-up: loaded once a task file was collected
    from pytest_infratask.items import CriterionItem, VerifyItem

    if call.when != "call":
        return None
    if isinstance(item, VerifyItem):
        return verify_metadata(item)
    if not isinstance(item, CriterionItem):
        return None
    module = item.task_module
    outcome = item.outcome
    return {
        "infratask": {
            "task_id": module.task.id,
            "task_type": module.task_type,
            "criterion": item.criterion.text,
            "number": item.criterion.number,
            "line": item.criterion.line,
            "status": outcome.status.value if outcome is not None else None,
            "cwd": outcome.cwd if outcome is not None else None,
        }
    }


def verify_metadata(item: VerifyItem) -> dict[str, object]:
    """A ``::verify`` item carries the task's verdict and its contract as it stood."""
    # start-up: both are loaded once a task file ran
    from pytest_infratask.items import RUN_KEY
    from pytest_infratask.report.contract import build_contract

    module = item.task_module
    run = module.stash.get(RUN_KEY, None)
    verdict = item.verdict
    return {
        "infratask": {
            "task_id": module.task.id,
            "task_type": module.task_type,
            "verdict": verdict.status if verdict is not None else None,
            "message": verdict.message if verdict is not None else None,
            "contract": build_contract(run.record()) if run is not None else None,
        }
    }


def held_back(config: pytest.Config, report: pytest.TestReport) -> None:
    """Items skipped because another criterion failed or was blocked count as last
    failed in pytest's cache, so ``--lf``/``--ff`` rerun the chain they belong to."""
    if report.skipped and any(name == HELD_BACK for name, _ in report.user_properties):
        count_as_last_failed(config, report)


def worker_finish(config: pytest.Config) -> None:
    """On an xdist worker: hand the contracts to the controller as plain data."""
    output = worker_output(config)
    if output is not None:
        output[WORKER_KEY] = json.dumps(list(contracts(config).values()))


def node_down(config: pytest.Config, node: object) -> None:
    """On the controller: merge a worker's contracts (each task ran on one worker)."""
    run = (compat.worker_input(node) or {}).get("testrunuid")
    if run is not None:
        config.stash.setdefault(RUNS_KEY, set()).add(str(run))
    data = (compat.worker_output(node) or {}).get(WORKER_KEY)
    if data:
        for contract in json.loads(data):
            contracts(config)[contract["task_path"]] = contract


def controller_finish(config: pytest.Config) -> None:
    """On the controller: the workers' "task finished" markers have served their run."""

    paths = [Path(p) for p in contracts(config)]
    for run in config.stash.get(RUNS_KEY, set()):
        forget_run(run, paths)


def terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    tasks = contracts(config)
    if not tasks:
        return
    # start-up: the messages bring the task vocabulary, which a run without tasks never needs
    from pytest_infratask.core.messages import findings_lines, summary_line

    # A progress line already ended: the first line under the header must not end it
    # again (a blank line); one still open is ended before the header.
    if terminal_writer(terminalreporter).width_of_current_line == 0:
        terminalreporter.currentfspath = None
    terminalreporter.ensure_newline()
    terminalreporter.section("infratask")
    for c in tasks.values():
        counts = c["criteria"]
        checks = [(v["check"], v["ok"]) for v in c["verification"]]
        line = summary_line(f"{c['task_id']} [{c['task_type']}]", c["status"], counts, checks)
        markup = (
            {"green": True}
            if c["success"] and not counts["remaining"]
            else ({"red": True} if not c["success"] else {"yellow": True})
        )
        terminalreporter.write_line(line, **markup)
        if commits := delivery(c):
            terminalreporter.write_line(f"    commit: {commits}")
        for finding in findings_lines(c.get("security_findings") or []):
            terminalreporter.write_line(f"    {finding}")
        if c.get("dry_run"):
            terminalreporter.write_line(f"    handler: {c['handler']}")
            for r in c["criteria_results"]:
                terminalreporter.write_line(
                    f"    #{r['number']} {r['criterion']} [{r['status']}]: {r['message']}"
                )
                if r["cwd"]:
                    terminalreporter.write_line(f"        in {r['cwd']}")
                for command in r["commands"]:
                    lines = command.rstrip().splitlines() or [""]
                    terminalreporter.write_line(f"        $ {lines[0]}")
                    for more in lines[1:]:
                        terminalreporter.write_line(f"          {more}")
        terminalreporter.write_line(f"    next: {c['next_steps']}")


class ReportPlugin:
    """Hooks that need the config but whose specs do not pass it (json-report, xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_modifyreport(self, json_report: JsonReport) -> None:
        modify_json_report(self.config, json_report)

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> dict[str, object] | None:
        return runtest_metadata(item, call)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: object, error: object) -> None:
        node_down(self.config, node)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        held_back(self.config, report)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if "pytest_infratask.items" not in sys.modules:
            return  # no task file was collected
        from pytest_infratask.items import CriterionItem  # loaded: a task file was

        tasks = {item.path for item in session.items if isinstance(item, CriterionItem)}
        remember_session(self.config, tasks)

    def pytest_sessionfinish(self) -> None:
        worker_finish(self.config)
        controller_finish(self.config)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminal_summary(terminalreporter, self.config)
