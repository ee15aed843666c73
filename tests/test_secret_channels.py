"""Every form of every secret, printed by the commands of real task runs in a git
repository, is absent from every channel a person or a file sees: the terminal
(default, ``-s``, ``-v -l --tb=long``), JUnit, the JSON report, the per-task reports,
the summary, SARIF, the task files' progress logs, the commit message and ``git log -p``.

Four runs make every channel (on fresh copies of one repository); each channel
is its own test. A control runs the same printing script without the plugin and
finds every form in its output, so a channel that shows one would fail."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import DEADLINE, git, item, task_md, write_task

import pytest_infratask

API_TOKEN = "tok-Channel-9d8c7b6a5f"
PREFIXES = ("", "a", "ab", "abc", "abcd", "abcde")
DEPLOY_PASSWORD = "Basic-pw-4e5f6a7b8c"
ODD_PASSWORD = "p@ss/w0rd:x y&z=1"
NEUTRAL = {
    "NOTES_GH": "ghp_" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0PpOoNn",
    "NOTES_GL": "glpat-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn",
    "NOTES_AWS": "AKIAQWERTYUIOPASDFGH",
    "NOTES_SLACK": "xoxb-210987654321-9876543210987-QwErTyUiOpAsDfGhJkLzXcVb",
    "NOTES_JWT": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJjaGFubmVscyJ9.c2lnbmF0dXJlLWJ5dGVz",
}
KEY_LINES = ("MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDchannels",)
OTHER_KEY_LINES = ("MIICXAIBAAKBgQCotherkeyfileUnknownToAnyVariable0123",)
KUBE_TOKEN = "kube-broken-token-5a4b3c2d1e"
XDG_PASSWORD = "xdg-config-pw-6f7e8d9c"
NAMED_PASSWORD = "named-auth-pw-1a2b3c4d"
DOCKER_PASSWORD = "user-home-docker-pw-0f9e"
LONG_LINE_TOKEN = "straddle-secret-value-0123456789abcdef"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def stable_core(prefix: bytes, secret: bytes) -> str:
    """The characters of base64(prefix + secret) made of the secret's bits alone."""
    text = base64.b64encode(prefix + secret).decode()
    low, high = 8 * len(prefix), 8 * (len(prefix) + len(secret))
    inside = [k for k in range(len(text)) if 6 * k >= low and 6 * k + 6 <= high]
    return text[inside[0] : inside[-1] + 1]


def pem(lines: tuple[str, ...]) -> str:
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END PRIVATE KEY-----\n"


# What must never be seen, by form: a channel showing any of these strings leaks.
HALF = len(LONG_LINE_TOKEN) // 2
FORMS: dict[str, list[str]] = {
    "plain": [API_TOKEN],
    **{
        f"base64, prefix of {len(p)}": [stable_core(p.encode(), API_TOKEN.encode())]
        for p in PREFIXES
    },
    "Authorization: Basic (curl -v -u)": [stable_core(b"deploy:", DEPLOY_PASSWORD.encode())],
    "URL-encoded": [quote(ODD_PASSWORD, safe=""), ODD_PASSWORD],
    **{f"token shape under {name}": [value] for name, value in NEUTRAL.items()},
    "private key under a neutral name": list(KEY_LINES),
    "private key from a file": list(OTHER_KEY_LINES),
    "token of a kubeconfig that does not parse": [KUBE_TOKEN],
    "$XDG_CONFIG_HOME/containers/auth.json password": [XDG_PASSWORD],
    "$REGISTRY_AUTH_FILE password": [NAMED_PASSWORD],
    "the user's docker login": [DOCKER_PASSWORD],
    "a secret across a 64 KiB cut": [LONG_LINE_TOKEN[:HALF], LONG_LINE_TOKEN[HALF:]],
}

SERVE_ONCE = """\
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(str(server.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
conn, _ = server.accept()
conn.recv(65536)
conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
conn.close()
"""
LONG_LINE = """\
import os, sys, time
token = os.environ["LONG_LINE_TOKEN"]
sys.stdout.write("x" * 70000 + " " + token[:13])
sys.stdout.flush()
time.sleep(0.3)  # the reader takes the first part alone: a cut falls inside the token
sys.stdout.write(token[13:] + " end\\n")
"""
# At most 20 lines (the tail a failure report keeps), every form once; the long line
# first, so that the 16,000 characters a report keeps of the tail hold every other line.
SHOW = """\
set -e
"$PY" secret-config/long_line.py
echo "plain=$API_TOKEN"
for p in "" a ab abc abcd abcde; do printf '%s ' "$(printf %s "$p$API_TOKEN" | base64 -w0)"; done
echo
rm -f secret-config/port
"$PY" secret-config/serve_once.py secret-config/port &
until [ -s secret-config/port ]; do sleep 0.02; done
curl -sv -u "deploy:$DEPLOY_PASSWORD" "http://127.0.0.1:$(cat secret-config/port)/" 2>&1 \
  | grep -a 'Authorization: Basic'
wait
"$PY" -c 'import os, urllib.parse as u; print("url=" + u.quote(os.environ["ODD_PASSWORD"], safe=""))'
echo "gh=$NOTES_GH gl=$NOTES_GL aws=$NOTES_AWS slack=$NOTES_SLACK jwt=$NOTES_JWT"
printf '%s' "$DEPLOY_MATERIAL"
cat secret-config/other.pem
grep 'token:' secret-config/copies/kubeconfig
"$PY" -c 'import json; print(json.load(open("secret-config/copies/xdg.json"))["auths"]["xdg.example"]["password"])'
"$PY" -c 'import json; print(json.load(open("secret-config/copies/named.json"))["auths"]["named.example"]["password"])'
"$PY" -c 'import base64, json; print(base64.b64decode(json.load(open("secret-config/copies/docker.json"))["auths"]["docker.example"]["auth"]).decode())'
"""  # noqa: E501


def _environment(root: Path) -> dict[str, str]:
    config = root / "secret-config"
    plugin = str(Path(pytest_infratask.__file__).resolve().parents[1])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "PYTEST_", "REGISTRY_", "DOCKER_", "XDG_", "KUBE"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (plugin, os.environ.get("PYTHONPATH")) if p),
        PY=sys.executable,
        HOME=str(config / "user-home"),
        API_TOKEN=API_TOKEN,
        DEPLOY_PASSWORD=DEPLOY_PASSWORD,
        ODD_PASSWORD=ODD_PASSWORD,
        DEPLOY_MATERIAL=pem(KEY_LINES),
        KUBECONFIG=str(config / "broken-kubeconfig"),
        XDG_CONFIG_HOME=str(config / "xdg"),
        REGISTRY_AUTH_FILE=str(config / "named-auth.json"),
        LONG_LINE_TOKEN=LONG_LINE_TOKEN,
        GIT_AUTHOR_NAME="Infratask Test",
        GIT_AUTHOR_EMAIL="test@infratask.invalid",
        GIT_COMMITTER_NAME="Infratask Test",
        GIT_COMMITTER_EMAIL="test@infratask.invalid",
        **NEUTRAL,
    )
    return env


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _credential_files(config: Path) -> None:
    _write(
        config / "broken-kubeconfig",
        "apiVersion: v1\ncurrent-context: dev\ncontexts:\n- name: dev\n"
        "  context: {cluster: dev, user: dev}\nusers:\n- name: dev\n  user:\n"
        f"    token: {KUBE_TOKEN}: not valid here\n",
    )
    login = {"auths": {"xdg.example": {"username": "bot", "password": XDG_PASSWORD}}}
    _write(config / "xdg" / "containers" / "auth.json", json.dumps(login))
    login = {"auths": {"named.example": {"username": "ci", "password": NAMED_PASSWORD}}}
    _write(config / "named-auth.json", json.dumps(login))
    login = {"auths": {"docker.example": {"auth": b64(f"robot:{DOCKER_PASSWORD}")}}}
    _write(config / "user-home" / ".docker" / "config.json", json.dumps(login))
    # The sandbox hides the files themselves from commands; copies under other names
    # are what a command could still print, so the masker must know their values.
    for name, original in (
        ("kubeconfig", "broken-kubeconfig"),
        ("xdg.json", "xdg/containers/auth.json"),
        ("named.json", "named-auth.json"),
        ("docker.json", "user-home/.docker/config.json"),
    ):
        _write(config / "copies" / name, (config / original).read_text())


def _template(root: Path) -> Path:
    config = root / "secret-config"
    _credential_files(config)
    _write(config / "show.sh", SHOW)
    _write(config / "serve_once.py", SERVE_ONCE)
    _write(config / "long_line.py", LONG_LINE)
    _write(config / "other.pem", pem(OTHER_KEY_LINES))
    _write(root / ".gitignore", ".pytest_cache/\nsecret-config/\nreports/\n")
    show = "bash secret-config/show.sh"
    # A failed Verification command's report quotes its last line: make it a secret's.
    last_line = 'printf %s "a$API_TOKEN" | base64 >&2'
    meta = "workdir: ..\nupdated: 2024-01-01\nretries: 0"
    write_task(root / "tasks", "TASK-001.md", task_md(
        item("Show every secret form", show),
        item("Show them on stderr", f"{show} >&2; [ -e secret-config/fixed ]"),
        meta=f"id: TASK-001\ntitle: Rotate credentials\n{meta}",
    ))  # fmt: skip
    write_task(root / "tasks", "TASK-002.md", task_md(
        item("Fail loudly", f"{show}; {show} >&2; exit 1"),
        item("Reach the cluster", "kubectl get pods"),
        meta=f"id: TASK-002\ntitle: Break things\n{meta}\nkube_context: dev",
    ))  # fmt: skip
    write_task(root / "tasks", "TASK-003.md", task_md(
        item("Prepare", "true"),
        meta=f"id: TASK-003\ntitle: Verify loudly\n{meta}",
        after_ac=f"## Verification\n\n```bash\n{show}\n{last_line}\nexit 1\n```\n",
    ))  # fmt: skip
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "init")
    return root


def _pytest(root: Path, env: dict[str, str], *args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, "tasks"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=DEADLINE * 2,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout  # TASK-002 and TASK-003 fail, TASK-001 passes
    return run.stdout


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _template(tmp_path_factory.mktemp("channels") / "repo")


@pytest.fixture(scope="module")
def channels(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every channel's text, from three runs on copies of the template repository."""

    def fresh(name: str) -> Path:
        copy = tmp_path_factory.mktemp(name) / "repo"
        shutil.copytree(template, copy, symlinks=True)
        return copy

    seen: dict[str, str] = {}
    root = fresh("full")
    env = _environment(root)
    args = (
        "-rA", "--infratask-commit", "--junitxml=reports/junit.xml", "--json-report",
        "--json-report-file=reports/run.json", "--infratask-report-dir=reports/tasks",
        "--infratask-summary=reports/summary.md", "--infratask-sarif=reports/results.sarif",
    )  # fmt: skip
    # Twice: TASK-001 fails its #2 first, then passes and is committed with that line.
    for attempt in ("first", "second"):
        if attempt == "second":
            (root / "secret-config" / "fixed").touch()
        out = _pytest(root, env, "-s", *args)
        seen["terminal (-s)"] = seen.get("terminal (-s)", "") + out
        reports = {
            "JUnit XML": root / "reports/junit.xml",
            "JSON report": root / "reports/run.json",
            "summary": root / "reports/summary.md",
            "SARIF": root / "reports/results.sarif",
            **{f"per-task JSON {p.stem}": p for p in (root / "reports/tasks").glob("*.json")},
        }
        for name, path in reports.items():
            seen[name] = seen.get(name, "") + path.read_text()
    for task in sorted((root / "tasks").glob("*.md")):
        seen[f"progress log {task.stem}"] = task.read_text().split("## Progress Log")[1]
    seen["commit message"] = git(root, "log", "--format=%B")
    seen["git log -p"] = git(root, "log", "-p", "--all")
    root = fresh("default")
    seen["terminal (default)"] = _pytest(root, _environment(root))
    root = fresh("verbose")
    seen["terminal (-v -l --tb=long)"] = _pytest(root, _environment(root), "-v", "-l", "--tb=long")
    return seen


CHANNELS = [
    "terminal (default)",
    "terminal (-s)",
    "terminal (-v -l --tb=long)",
    "JUnit XML",
    "JSON report",
    "per-task JSON TASK-001",
    "per-task JSON TASK-002",
    "per-task JSON TASK-003",
    "summary",
    "SARIF",
    "progress log TASK-001",
    "progress log TASK-002",
    "progress log TASK-003",
    "commit message",
    "git log -p",
]
# Channels that carry command output (masked): "***" must show in them.
CARRY_OUTPUT = {"terminal (-s)", "terminal (default)", "terminal (-v -l --tb=long)",
                "JUnit XML", "JSON report", "per-task JSON TASK-001", "per-task JSON TASK-002",
                "per-task JSON TASK-003"}  # fmt: skip


def _leaks(text: str) -> list[str]:
    return [form for form, needles in FORMS.items() if any(n in text for n in needles)]


def test_control_every_form_is_printed(template: Path, tmp_path: Path) -> None:
    """Without the plugin the script prints every form: a channel showing one leaks."""
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    run = subprocess.run(
        ["bash", "secret-config/show.sh"], cwd=root, env=_environment(root),
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert _leaks(run.stdout) == list(FORMS)


@pytest.mark.parametrize("channel", CHANNELS)
def test_no_secret_form_reaches(channels: dict[str, str], channel: str) -> None:
    text = channels[channel]
    assert _leaks(text) == []
    if channel in CARRY_OUTPUT:
        assert "***" in text, "the commands' output reached this channel, masked"


def test_what_the_runs_did(channels: dict[str, str]) -> None:
    """The runs did what the channels assume: output shown live and masked, the commit
    made, failures logged without output, the broken kubeconfig named by line."""
    live = channels["terminal (-s)"]
    assert "plain=***" in live and "gh=*** gl=*** aws=*** slack=*** jwt=***" in live
    assert "TASK-001: Rotate credentials" in channels["commit message"]
    failed = "Failed #1: Fail loudly: command failed with exit code 1 after 1 attempt(s)"
    [line] = [ln for ln in channels["progress log TASK-002"].splitlines() if failed in ln]
    assert "(see reports/tasks/TASK-002.json)" in line
    verification = "Verification failed: Verification command failed (exit 1)"
    assert (
        f"{verification} (see reports/tasks/TASK-003.json)" in (channels["progress log TASK-003"])
    )
    assert "broken-kubeconfig: invalid YAML at line 9" in channels["per-task JSON TASK-002"]
    assert "Failed #2: Show them on stderr: command failed" in channels["git log -p"]
    assert "Completed #2: Show them on stderr" in channels["git log -p"]


def test_a_task_cannot_name_its_own_credential_file(pytester: pytest.Pytester) -> None:
    """``env: {KUBECONFIG: <file>}`` is refused at collection, dry run or not: nothing
    reads the file (a FIFO nobody writes to would hang the run) or shows any of it."""
    fifo = pytester.path / "never-written"
    os.mkfifo(fifo)
    write_task(pytester.path, "TASK-001.md", task_md(
        item("Look at pods", "kubectl get pods"),
        meta=f"id: TASK-001\nkube_context: dev\nenv:\n  KUBECONFIG: {fifo}",
    ))  # fmt: skip
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--infratask-dry-run", "TASK-001.md", timeout=DEADLINE
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*TASK-001.md:4: env: KUBECONFIG cannot be set by a task*"])
    assert "would run" not in result.stdout.str()


def test_a_broken_kubeconfig_is_named_by_line_never_quoted(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_line = "    token: leaked-if-quoted-123456"
    broken = pytester.path / "kubeconfig"
    broken.write_text(f"users:\n- name: dev\n  user:\n{secret_line}\n  : [x\n")
    monkeypatch.setenv("KUBECONFIG", str(broken))  # the user's own kubeconfig
    write_task(pytester.path, "TASK-001.md", task_md(
        item("Look at pods", "kubectl get pods"),
        meta="id: TASK-001\nkube_context: dev",
    ))  # fmt: skip
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "TASK-001.md", timeout=DEADLINE
    )
    out = result.stdout.str()
    assert f"cannot read kubeconfig {broken}: invalid YAML at line 5" in out
    assert "leaked-if-quoted" not in out + (pytester.path / "TASK-001.md").read_text()
