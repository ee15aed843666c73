"""Secrets never leave the process: every form of every secret the run can know is
absent from everything a person or a file sees, through one masking path; harmless
values such as ``true`` are never masked."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import DEADLINE, git, item, task_md, write_task

import pytest_infratask
from pytest_infratask.core.masking import MASK, Masker

API_TOKEN = "tok-SECRET-1234567"
DB_PASSWORD = "db-pa@ss-999"
REGISTRY_PASSWORD = "reg-pass-555"
CUSTOM = "custom-secret-321"
BLOB = "blob-secret-654"
KUBE_TOKEN = "kube-token-abcdef123456"
KEY_LINE = "MIIEfakeKeyBodyLine1234567890abcdefABCDEF"
KEY_DATA = base64.b64encode(
    f"-----BEGIN PRIVATE KEY-----\n{KEY_LINE}\n-----END PRIVATE KEY-----\n".encode()
).decode()
DOCKER_PASSWORD = "dockerpass-777"
PODMAN_PASSWORD = "podmanpass-888"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FORMS = {
    "token": API_TOKEN,
    "token base64": b64(API_TOKEN),
    "database password": DB_PASSWORD,
    "database password, URL-encoded": quote(DB_PASSWORD, safe=""),
    "database basic auth": b64(f"app:{DB_PASSWORD}"),
    "registry password": REGISTRY_PASSWORD,
    "registry basic auth": b64(f"ci:{REGISTRY_PASSWORD}"),
    "frontmatter secrets:": CUSTOM,
    "ini infratask_secret_vars": BLOB,
    "kubeconfig token": KUBE_TOKEN,
    "kubeconfig client key": KEY_DATA,
    "kubeconfig client key line": KEY_LINE,
    "docker config password": DOCKER_PASSWORD,
    "docker config auth": b64(f"robot:{DOCKER_PASSWORD}"),
    "containers auth.json password": PODMAN_PASSWORD,
    "containers auth.json auth": b64(f"bot:{PODMAN_PASSWORD}"),
}

SHOW = """\
import base64, json, os, urllib.parse as u
env = os.environ
print("decoded=" + u.unquote(env["DATABASE_URL"]))
print("basic " + base64.b64encode(b"app:" + env["DB_PW"].encode()).decode())
pw = open("regpw").read().strip().encode()
print("Authorization: Basic " + base64.b64encode(b"ci:" + pw).decode())
for path, host in (
    ("secret-config/copies/docker.json", "registry.example"),
    ("secret-config/copies/podman.json", "quay.example"),
):
    print(base64.b64decode(json.load(open(path))["auths"][host]["auth"]).decode())
"""
# The sandbox hides the user's own credential files (the run's KUBECONFIG,
# DOCKER_CONFIG, XDG_RUNTIME_DIR logins, whose secrets the masker learns); copies of
# them under other names are what a careless command could still print.
PRINT_EVERYTHING = """\
echo "t=$API_TOKEN"
printf %s "$API_TOKEN" | base64
echo "db=$DATABASE_URL"
echo "reg=$REGISTRY_URL"
echo "custom=$PLAIN_VALUE_VAR blob=$SESSION_BLOB"
cat secret-config/copies/kubeconfig
grep client-key-data secret-config/copies/kubeconfig | awk '{print $2}' | base64 -d
cat secret-config/copies/docker.json secret-config/copies/podman.json
python3 secret-config/show.py
echo "flag=$FEATURE_KEY_ENABLED other=$SOME_KEY"
"""


@pytest.fixture
def secrets_everywhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, git_identity: None
) -> Path:
    root = pytester.path
    plugin = str(Path(pytest_infratask.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (plugin, os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    kube = root / "secret-config" / "kubeconfig"
    kube.parent.mkdir()
    kube.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        "contexts:\n- name: dev\n  context: {cluster: dev, user: dev}\n"
        "clusters:\n- name: dev\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        f"users:\n- name: dev\n  user:\n    token: {KUBE_TOKEN}\n"
        f"    client-key-data: {KEY_DATA}\n"
    )
    docker = root / "secret-config" / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"auths": {"registry.example": {"auth": b64(f"robot:{DOCKER_PASSWORD}")}}})
    )
    runtime = root / "secret-config" / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(
        json.dumps({"auths": {"quay.example": {"auth": b64(f"bot:{PODMAN_PASSWORD}")}}})
    )
    copies = root / "secret-config" / "copies"
    copies.mkdir()
    for name, original in (
        ("kubeconfig", kube),
        ("docker.json", docker / "config.json"),
        ("podman.json", runtime / "containers" / "auth.json"),
    ):
        (copies / name).write_text(original.read_text())
    (root / "regpw").write_text(REGISTRY_PASSWORD)
    (root / "secret-config" / "show.py").write_text(SHOW)
    for name, value in {
        "API_TOKEN": API_TOKEN,
        "DATABASE_URL": f"postgres://app:{quote(DB_PASSWORD, safe='')}@db.example/app",
        "DB_PW": DB_PASSWORD,  # the test's own helper: masked as a secret-looking name
        "REGISTRY_URL": f"https://ci:{REGISTRY_PASSWORD}@registry.example",
        "PLAIN_VALUE_VAR": CUSTOM,
        "SESSION_BLOB": BLOB,
        "KUBECONFIG": str(kube),
        "DOCKER_CONFIG": str(docker),
        "XDG_RUNTIME_DIR": str(runtime),
        "FEATURE_KEY_ENABLED": "true",
        "SOME_KEY": "false",
    }.items():
        monkeypatch.setenv(name, value)
    (root / "pytest.ini").write_text("[pytest]\ninfratask_secret_vars = SESSION_BLOB\n")
    (root / ".gitignore").write_text(
        ".pytest_cache/\nstdout\nstderr\nsecret-config/\nregpw\nfixed\nreports/\n"
    )
    git(root, "init", "-q", "-b", "main")
    write_task(
        root / "tasks",
        "TASK-001.md",
        task_md(
            item("Print every secret", PRINT_EVERYTHING),
            item("Connect", 'echo "conn $DATABASE_URL tok $API_TOKEN" >&2; [ -e fixed ]'),
            meta="id: TASK-001\ntitle: Rotate credentials\nworkdir: ..\nupdated: 2024-01-01\n"
            "retries: 0\nsecrets: [PLAIN_VALUE_VAR]",
        ),
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _leaks(text: str) -> list[str]:
    return [name for name, value in FORMS.items() if value in text]


def test_no_secret_form_reaches_any_output_file_or_commit(
    pytester: pytest.Pytester, secrets_everywhere: Path
) -> None:
    root = secrets_everywhere
    args = (
        "-p",
        "no:cacheprovider",
        "-s",
        "-rA",
        "tasks",
        "--infratask-commit",
        "--junitxml=reports/junit.xml",
        "--json-report",
        "--json-report-file=reports/run.json",
        "--infratask-report-dir=reports/tasks",
    )
    first = pytester.runpytest_subprocess(*args, timeout=DEADLINE)
    first.assert_outcomes(passed=1, failed=1, skipped=1)  # ::verify waits
    (root / "fixed").touch()
    second = pytester.runpytest_subprocess(*args, timeout=DEADLINE)
    second.assert_outcomes(passed=2, skipped=1)  # #2 and ::verify; #1 was done

    seen = {
        "first run's output": first.stdout.str() + first.stderr.str(),
        "second run's output": second.stdout.str() + second.stderr.str(),
        "task file": (root / "tasks" / "TASK-001.md").read_text(),
        "git history": git(root, "log", "-p", "--all", "--format=%B"),
    }
    for report in (root / "reports").rglob("*"):
        if report.is_file():
            seen[str(report.relative_to(root))] = report.read_text()
    leaks = {where: _leaks(text) for where, text in seen.items() if _leaks(text)}
    assert leaks == {}

    out = seen["first run's output"]
    assert "t=***" in out and "custom=*** blob=***" in out  # streamed live with -s, masked
    assert "db=postgres://app:***@db.example/app" in out
    assert "flag=true other=false" in out, "harmless values must not be masked"
    assert "TASK-001: Rotate credentials" in seen["git history"]
    # The task file says what happened and where to read the output, never the output.
    assert "conn postgres" not in seen["task file"]
    assert (
        "Failed #2: Connect: command failed with exit code 1 after 1 attempt(s), "
        "at line 1: [ -e fixed ] (see reports/tasks/TASK-001.json)" in seen["task file"]
    )
    contract = json.loads((root / "reports" / "tasks" / "TASK-001.json").read_text())
    assert contract["status"] == "committed"


def test_github_actions_is_told_every_value_before_a_command_runs(
    pytester: pytest.Pytester, secrets_everywhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-s",
            "tasks/TASK-001.md",
            "-k",
            "print",
        ],
        cwd=secrets_everywhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DEADLINE,
    )
    out = run.stdout
    masks = {
        line.removeprefix("::add-mask::")
        for line in out.splitlines()
        if line.startswith("::add-mask::")
    }
    for name, value in FORMS.items():
        assert value in masks, name
    assert "true" not in masks and "false" not in masks
    last_mask = max(i for i, line in enumerate(out.splitlines()) if line.startswith("::add-mask"))
    # -s shows each output line live, prefixed with its task and criterion
    first_output = next(
        i for i, line in enumerate(out.splitlines()) if re.match(r"(\[[^]]*\] )?t=", line)
    )
    assert last_mask < first_output


def test_locals_printed_on_a_crash_hold_no_secret(
    pytester: pytest.Pytester, secrets_everywhere: Path
) -> None:
    (secrets_everywhere / "conftest.py").write_text(
        "from pytest_infratask.run import process as run\n"
        "def broken(*args, **kwargs):\n"
        "    raise RuntimeError('selector broke')\n"
        "run.selectors.DefaultSelector = broken\n"
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-l",
        "--tb=long",
        "tasks/TASK-001.md",
        "-k",
        "print",
        timeout=DEADLINE,
    )
    out = result.stdout.str()
    assert "selector broke" in out and "env = <Environment:" in out, out
    assert _leaks(out) == []


class TestMasker:
    def test_one_object_masks_text_lines_and_reports(self) -> None:
        mask = Masker({"API_TOKEN": API_TOKEN})
        assert mask.mask(f"a {API_TOKEN} b") == f"a {MASK} b" == mask(f"a {API_TOKEN} b")
        assert mask.mask_line(f"{API_TOKEN}\n") == f"{MASK}\n"
        assert mask.mask_data({"x": [f"{API_TOKEN}", 1]}) == {"x": [MASK, 1]}
        assert API_TOKEN not in repr(mask)

    @pytest.mark.parametrize(
        "value", ["true", "false", "yes", "no", "on", "off", "0", "1", "True", "NO"]
    )
    def test_boolean_like_values_are_never_masked(self, value: str) -> None:
        mask = Masker({"FEATURE_KEY_ENABLED": value, "API_KEY": value})
        mask.add([value])
        assert mask(f"enabled={value}") == f"enabled={value}"

    def test_any_url_password_is_masked(self) -> None:
        mask = Masker()
        assert mask("see https://u:p4ss@host/x and redis://:pw12@r") == (
            "see https://u:***@host/x and redis://:***@r"
        )

    def test_base64_and_url_encoded_forms(self) -> None:
        mask = Masker({"DATABASE_URL": "mysql://me:a%2Fb%40c-123@db/x"})
        for form in ("a/b@c-123", "a%2Fb%40c-123", b64("me:a/b@c-123"), b64("a/b@c-123")):
            assert mask(f"[{form}]") == "[***]", form


class TestCuts:
    def test_a_cut_through_a_secret_keeps_none_of_it(self) -> None:
        from pytest_infratask.run.process import _Tail

        kept = _Tail(20)
        kept.add(b"aaaa SECRETVALUE123456 tail\n")
        text = kept.text()
        assert kept.dropped and text == "tail\n"
        assert "123456" not in text

    def test_live_output_is_masked_whole_across_reads(self) -> None:
        from pytest_infratask.report.live import Display, Live

        shown: list[str] = []

        class Recorder(Display):
            def line(self, live: Live, text: str) -> None:
                shown.append(text)

        live = Live(Recorder(), "TASK-001 #1", Masker({"API_TOKEN": "SECRET99"}))
        for chunk in (b"x=SEC", b"RET99\ny=SECR", b"ET99"):
            live(chunk, 1)
        live.close()
        assert shown == ["x=***", "y=***"]
