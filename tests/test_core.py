"""core/ is the vocabulary every stage shares, said once: the frontmatter keys (and the
JSON Schema, table and checks derived from them), the credential locations the masker
reads, and nothing of the rest of the package."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import DEADLINE, QUIET, item, task_md, write_task
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest_infratask
from pytest_infratask.core import schema
from pytest_infratask.core.credentials import (
    CHOSEN_BY,
    credential_files,
    kubeconfig_paths,
    registry_auth_files,
)
from pytest_infratask.core.masking import Masker
from pytest_infratask.core.verdict import Verdict, VerdictStatus
from pytest_infratask.read.taskfile import TaskFileError, parse_task, read_task

PACKAGE = Path(pytest_infratask.__file__).parent
REPO = PACKAGE.parent
STRICT = (
    "-o",
    "infratask_strict_keys=true",
    "-W",
    "error::pytest_infratask.core.schema.InfrataskWarning",
)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in it (``if TYPE_CHECKING`` blocks and
    function bodies included), relative imports resolved."""
    package = "pytest_infratask.core"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def test_core_imports_nothing_else_of_the_package() -> None:
    files = sorted((PACKAGE / "core").glob("*.py"))
    assert len(files) >= 10
    outside = [
        f"{path.name}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if module.split(".")[0] == "pytest_infratask"
        and not module.startswith("pytest_infratask.core")
    ]
    assert outside == []


def test_the_import_walk_sees_type_checking_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from pytest_infratask.run.process import run_script\n"
        "def f():\n    from ..util import locks\n"
    )
    modules = [module for _, module in _imports(source)]
    assert "pytest_infratask.run.process" in modules
    assert "pytest_infratask.util" in modules


# -- the shipped JSON Schema ---------------------------------------------------------


def test_the_shipped_schema_is_json_schema() -> None:
    shipped = PACKAGE / "frontmatter.schema.json"
    assert json.loads(shipped.read_text()) == schema.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema.json_schema())


def test_the_regeneration_command_writes_the_shipped_file() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    made = subprocess.run(
        [sys.executable, "-m", "pytest_infratask.core.schema"],
        env=env, capture_output=True, text=True, check=True, timeout=DEADLINE,
    )  # fmt: skip
    assert made.stdout == (PACKAGE / "frontmatter.schema.json").read_text()


def test_the_package_data_ships_the_schema() -> None:
    config = (REPO / "pyproject.toml").read_text()
    assert '"*.schema.json"' in config


def _jsonable(meta: dict[str, object]) -> object:
    """The frontmatter as a JSON document holds it: YAML dates become strings."""
    return json.loads(json.dumps(meta, default=str))


def _task_files() -> list[Path]:
    found = [*(REPO / "tests").rglob("*.md"), *(REPO / "tests" / "fuzz_corpus").glob("*.seed")]
    return sorted([*found, *(REPO / "example_tasks").glob("*.md")])


def test_every_task_file_the_parser_accepts_is_valid_under_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(schema.json_schema())
    accepted = 0
    for path in _task_files():
        try:
            task = read_task(path)
        except TaskFileError:
            continue
        errors = [e.message for e in validator.iter_errors(_jsonable(task.meta))]
        assert errors == [], path
        accepted += 1 if task.meta else 0
    assert accepted >= 12


BOUNDED = [key for key in schema.KEYS if key.minimum is not None or key.maximum is not None]


def _accepted(meta: dict[str, object]) -> bool:
    text = "---\n" + yaml.safe_dump(meta) + "---\n# T\n"
    try:
        parse_task(Path("TASK-1.md"), text.encode())
    except TaskFileError:
        return False
    return True


def test_the_bounded_keys_are_the_durations_and_retries() -> None:
    assert {key.name for key in BOUNDED} == {
        "timeout", "retry_delay", "wait", "poll_interval", "retries",
    }  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(BOUNDED),
    value=st.one_of(
        st.integers(-(10**6), 10**9),
        st.floats(-1e9, 1e9, allow_nan=False),
        st.booleans(),
        st.sampled_from([0, 100, 101, -1, 366 * 86400, 366 * 86400 + 1, 0.5, 100.0]),
    ),
)
def test_the_parser_accepts_a_bounded_number_iff_the_schema_does(
    key: schema.Key[object], value: object
) -> None:
    meta = {"id": "TASK-1", key.name: value}
    valid = jsonschema.Draft202012Validator(schema.json_schema()).is_valid(meta)
    assert _accepted(meta) == valid


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from([k for k in BOUNDED if k.kind == "duration"]),
    value=st.text(alphabet="0123456789.dhms hx-", max_size=8),
)
def test_a_duration_text_the_parser_accepts_is_valid_under_the_schema(
    key: schema.Key[object], value: str
) -> None:
    meta = {"id": "TASK-1", key.name: value}
    if _accepted(meta):
        assert jsonschema.Draft202012Validator(schema.json_schema()).is_valid(meta)


def test_the_reference_table_names_every_key_once_in_its_group() -> None:
    table = schema.markdown_table()
    for key in schema.KEYS:
        rows = [line for line in table.splitlines() if line.startswith(f"| `{key.name}` |")]
        assert rows == [f"| `{key.name}` | {key.kind} | {key.default} | {key.doc} |"]
    assert table.count("### ") == len(schema.GROUPS)
    assert len({key.name for key in schema.KEYS}) == len(schema.KEYS)
    assert {key.group for key in schema.KEYS} == set(schema.GROUPS)


def test_bad_values_are_refused_with_the_key_and_its_line() -> None:
    text = "---\nid: TASK-1\ntitle: T\nretries: 101\n---\n# T\n"
    with pytest.raises(TaskFileError) as error:
        parse_task(Path("TASK-1.md"), text.encode())
    assert error.value.line == 4
    assert error.value.message == "retries: expected a whole number from 0 to 100"


# -- every key is known --------------------------------------------------------------

# The keys the README's tables and examples document (kept as they were written, so a
# key dropped from the schema by mistake shows here).
README_KEYS = (
    "allow_direct_apply", "assignee", "branch", "checks", "dependencies", "env",
    "environment", "id", "images", "kube_context", "labels", "poll_interval", "priority",
    "reconcile", "registry", "registry_auth_file", "repo", "reporter", "retries", "secrets",
    "security", "status", "syntax_check", "timeout", "title", "type", "updated",
    "updated_date", "validate", "version", "wait", "workdir", "writable",
)  # fmt: skip
SAMPLES: dict[str, object] = {
    "duration": "90s",
    "int 0-100": 2,
    "mapping": {"A": "b"},
    "date": "2024-01-01",
    "bool or a reason (str)": "INC-1 emergency",
    "str": "x",
    "any": "x",
}
OWN_SAMPLES: dict[str, object] = {
    "id": "TASK-1",
    "type": "generic",
    "images": ["api"],
    "checks": [{"http": "http://127.0.0.1:1/"}],
    "security": {"skip": ["resource-limits"]},
    "registry_auth_file": "auth.json",
    "secrets": ["API_TOKEN"],
}


def test_the_readme_keys_are_declared() -> None:
    assert set(README_KEYS) <= schema.KNOWN_KEYS


def test_every_declared_key_is_known_also_with_strict_keys(pytester: pytest.Pytester) -> None:
    values = {
        key.name: OWN_SAMPLES.get(key.name, SAMPLES.get(key.kind, ["a"])) for key in schema.KEYS
    }
    meta = yaml.safe_dump(values, sort_keys=False)
    write_task(pytester.path, "TASK-1.md", task_md(item("Step", "true"), meta=meta))
    result = pytester.runpytest(*QUIET, *STRICT, "--collect-only", "-q", "TASK-1.md")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["TASK-1.md::ac1-step", "*1 test collected*"])
    assert "UnknownKeyWarning" not in result.stdout.str()


def test_a_near_miss_key_still_warns_with_a_suggestion(pytester: pytest.Pytester) -> None:
    write_task(pytester.path, "TASK-1.md", task_md(
        item("Step", "true"), meta="id: TASK-1\nregistry_auth_fil: auth.json"
    ))  # fmt: skip
    result = pytester.runpytest(*QUIET, "--collect-only", "-q", "TASK-1.md")
    result.stdout.fnmatch_lines([
        "*UnknownKeyWarning*unknown frontmatter key 'registry_auth_fil'; "
        "did you mean 'registry_auth_file'?*"
    ])  # fmt: skip
    strict = pytester.runpytest(*QUIET, *STRICT, "--collect-only", "-q", "TASK-1.md")
    assert strict.ret == pytest.ExitCode.INTERRUPTED


# -- every credential location is masked ---------------------------------------------


def _login(secret: str) -> str:
    auth = base64.b64encode(f"robot:{secret}".encode()).decode()
    return json.dumps({"auths": {"registry.example": {"auth": auth}}})


def _kubeconfig(secret: str) -> str:
    return f"apiVersion: v1\nusers:\n- name: u\n  user:\n    token: {secret}\n"


def _place(tmp_path: Path, variable: str) -> dict[str, str]:
    """An environment where ``variable`` chooses credential files under ``tmp_path``."""
    env = {"HOME": str(tmp_path / "home")}
    where = {
        "KUBECONFIG": str(tmp_path / "kube" / "one") + os.pathsep + str(tmp_path / "kube" / "two"),
        "REGISTRY_AUTH_FILE": str(tmp_path / "named.json"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
    }
    if variable in where:
        env[variable] = where[variable]
    if variable == "REGISTRY_AUTH_FILE":
        env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # the file it shadows is read too
    return env


@pytest.mark.parametrize("variable", sorted({v for vs in CHOSEN_BY.values() for v in vs}))
def test_every_listed_credential_location_has_its_secret_masked(
    tmp_path: Path, variable: str
) -> None:
    env = _place(tmp_path, variable)
    auth_file = tmp_path / "task-auth.json"
    locations = credential_files(env, auth_file)
    assert set(registry_auth_files(env, auth_file)) <= {p for _, p in locations}
    assert set(kubeconfig_paths(env)) <= {p for _, p in locations}
    secrets = {}
    for number, (kind, path) in enumerate(locations):
        secret = f"cred-{number}-{kind}-9f8e7d6c"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_kubeconfig(secret) if kind == "kubeconfig" else _login(secret))
        secrets[str(path)] = secret
    masker = Masker.for_run(env, auth_file=auth_file)
    shown = masker.mask(" ".join(f"[{s}] [robot:{s}]" for s in secrets.values()))
    assert [p for p, s in secrets.items() if s in shown] == []


SHOW = "cat creds/kube creds/home-login creds/shadowed creds/{}"


def test_credentials_in_locations_chosen_by_home_and_the_task_are_masked_in_a_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The locations the other end-to-end masking runs leave out: ``~/.kube/config`` and
    ``~/.config/containers/auth.json`` under ``HOME``, the runtime login a
    ``REGISTRY_AUTH_FILE`` shadows, the task's ``registry_auth_file`` and ini
    ``infratask_registry_auth_file``."""
    root = pytester.path
    home = root / "home"
    files = {
        "kube": (home / ".kube" / "config", _kubeconfig("home-kube-token-1a2b3c")),
        "home-login": (home / ".config/containers/auth.json", _login("home-login-pw-4d5e6f")),
        "shadowed": (root / "run/containers/auth.json", _login("shadowed-pw-7a8b9c")),
        "task-auth": (root / "tasks/auth.json", _login("task-auth-pw-0d1e2f")),
        "ini-auth": (root / "ini-auth.json", _login("ini-auth-pw-3a4b5c")),
    }
    for name, (path, text) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        (root / "creds").mkdir(exist_ok=True)
        (root / "creds" / name).write_text(text)
    (root / "pytest.ini").write_text("[pytest]\ninfratask_registry_auth_file = ini-auth.json\n")
    build = "id: TASK-1\nlabels: [builds]\nworkdir: ..\nregistry_auth_file: auth.json"
    write_task(
        root / "tasks", "TASK-1.md", task_md(item("Show", SHOW.format("task-auth")), meta=build)
    )
    other = "id: TASK-2\nlabels: [builds]\nworkdir: .."
    write_task(
        root / "tasks", "TASK-2.md", task_md(item("Show", SHOW.format("ini-auth")), meta=other)
    )
    plugin = str(REPO)
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (plugin, os.environ.get("PYTHONPATH")) if p),
        "HOME": str(home),
        "REGISTRY_AUTH_FILE": str(root / "named.json"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "KUBECONFIG": "",
        "XDG_CONFIG_HOME": "",
        "DOCKER_CONFIG": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess(
        *QUIET, "-s", "-rA", "--infratask-no-writeback", "tasks", timeout=DEADLINE
    )
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
    live, passes = out.split("= PASSES =")  # -rA: -rP shows each output tail again
    assert live.count("token: ***") == 2 and live.count('"auth": "***"') == 6  # printed, masked
    assert passes.count("token: ***") == 2
    secrets = ["home-kube-token-1a2b3c", "home-login-pw-4d5e6f", "shadowed-pw-7a8b9c"]
    secrets += ["task-auth-pw-0d1e2f", "ini-auth-pw-3a4b5c"]
    encoded = [base64.b64encode(f"robot:{s}".encode()).decode() for s in secrets]
    assert [s for s in [*secrets, *encoded] if s in out] == []


# -- verdicts ------------------------------------------------------------------------


def test_a_verdict_status_is_written_as_its_plain_value() -> None:
    verdict = Verdict("failed", "no")  # type: ignore[arg-type]
    assert verdict.status is VerdictStatus.FAILED and verdict.failed
    assert json.dumps({"verdict": verdict.status}) == '{"verdict": "failed"}'


def test_an_outcome_draft_names_only_outcome_fields() -> None:
    """``Drafts.new`` checks its keywords against ``Details``: every one of them must be a
    field of ``Outcome`` of the same type (a sequence for an iterable), so the two lists
    cannot drift apart."""
    import typing
    from collections.abc import Iterable

    from pytest_infratask.core.outcome import Outcome
    from pytest_infratask.orchestrator.drafts import Details

    outcome = typing.get_type_hints(Outcome)
    for name, kind in typing.get_type_hints(Details).items():
        assert name in outcome, f"Details.{name} is not a field of Outcome"
        if typing.get_origin(kind) is Iterable:
            assert outcome[name] == tuple[typing.get_args(kind)[0], ...], name
        else:
            assert kind == outcome[name], name
