"""pytest fixtures for the real cluster stack (load with ``pytest_plugins``).

``cluster`` is session-scoped: the control plane starts once (about 20 s) and every
test works in namespaces and Flux objects of its own. Without the built binaries the
tests are skipped, naming the command that builds them (they fail instead when
``INFRATASK_REQUIRE_CLUSTER`` is set, as in CI).

PYTEST_DONT_REWRITE: test modules import ``require_built`` from here as well as loading
it as a plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubestack import Stack, StackError, missing_components

_STACK = pytest.StashKey[Stack]()


def require_built() -> None:
    """Skip (fail under ``INFRATASK_REQUIRE_CLUSTER``) when a component is not built."""
    missing = missing_components()
    if missing:
        reason = (
            f"cluster stack not built ({', '.join(missing)} missing): "
            "run `make cluster-build` (demo/kubestack/build.sh, 25-45 min cold)"
        )
        if os.environ.get("INFRATASK_REQUIRE_CLUSTER"):
            pytest.fail(f"{reason}; INFRATASK_REQUIRE_CLUSTER is set", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    require_built()
    stack = Stack(tmp_path_factory.mktemp("cluster"))
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(f"cluster stack did not start: {exc}\n{stack.log_tails()}", pytrace=False)
    request.config.stash[_STACK] = stack
    try:
        yield stack
    finally:
        stack.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed cluster test shows the components' last log lines (logs stay in tmp)."""
    report: pytest.TestReport = yield
    stack = item.config.stash.get(_STACK, None)
    if stack is not None and report.failed and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(
            ("cluster logs", f"(full logs in {stack.logs})\n{stack.log_tails()}")
        )
    return report
