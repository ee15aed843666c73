"""Commands run in a sandbox, by construction: whatever their spelling, they reach no
context but the pinned one, write nothing through the read-only proxy, read none of
the user's credentials (tests/sandbox_support.py), the proxy serves only them, and
nothing they start outlives the run, however it ends (Ctrl-C is in test_isolation).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import DEADLINE, QUIET, item, none_left, processes_with, task_md, wait_for, write_task
from sandbox_spellings import SPELLINGS
from sandbox_support import WRITES, User, credentials

import pytest_infratask
from pytest_infratask.core.credentials import RESERVED_ENV
from pytest_infratask.run.sandbox import unavailable

SIGNAL_TRIALS = int(os.environ.get("INFRATASK_SIGNAL_TRIALS", "20"))
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"containers": [{"name": "main", "image": "example/web:1"}]}}  # fmt: skip
KINDS = {
    # read-only: the proxy's gate; deployment tasks skip the text lint for applies
    "configuration": "labels: [infrastructure]\nkube_context: dev",
    "deployment": "labels: [deployment]\nkube_context: dev",
    "unpinned": "labels: [docs]",
    "direct": "kube_context: dev\nallow_direct_apply: the pinned credentials stay pinned",
}
# The spellings the attack on the unsandboxed runner got through with (see the module
# docstring of sandbox_spellings), run on every change; the rest run in the slow tier.
FAST = {
    "unset",
    "env-i",
    "env-i-home",
    "env-u",
    "empty-value",
    "script-unset",
    "python-pop",
    "curl-token-home",
    "curl-every-token",
    "ppid-environ",
    "ppid-kubeconfig",
    "find-sockets",
    "find-infratask",
    "listening-ports",
    "curl-gate-no-token",
    "curl-gate-delete",
    "python-urllib-gate",
    "server-dev",
    "token-from-home",
    "flag-home-config",
    "cat-every-file",
    "every-fd",
    "unshare-umount",
    "python-kubernetes-prod",
    "curl-pipelined",
    "context-prod",
}


@pytest.fixture(autouse=True)
def _sandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = unavailable("bwrap")
    if reason is not None:
        message = f"commands cannot be sandboxed here: {reason}"
        if os.environ.get("INFRATASK_REQUIRE_SANDBOX") == "1":
            pytest.fail(message)
        pytest.skip(message)
    root = str(Path(pytest_infratask.__file__).resolve().parents[1])  # subprocess runs
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (root, os.environ.get(
        "PYTHONPATH")))))  # fmt: skip


@pytest.fixture
def user(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[User]:
    """The user's home inside the work tree: visible and writable to commands, so only
    the sandbox's masks stand between them and the credentials."""
    with credentials(pytester.path / "home", tmp_path / "pki", monkeypatch) as found:
        yield found


def fill(script: str, user: User) -> str:
    values = {
        "@PROD@": user.prod.url, "@DEV@": user.dev.url, "@PRODPORT@": str(user.prod.port),
        "@PORTS@": f"{user.prod.port} {user.dev.port}",
        "@KUBECONFIG@": str(user.kubeconfig), "@FILES@": " ".join(map(str, user.files)),
        "@PY@": sys.executable,
    }  # fmt: skip
    for key, value in values.items():
        script = script.replace(key, value)
    return script


def spelling_tasks(root: Path, user: User, kinds: list[str], ids: set[str] | None) -> int:
    """A task file per kind, a criterion per spelling whose output goes to out/; the
    number of criteria per task."""
    (root / "out").mkdir()
    (root / "pod.yaml").write_text(yaml.safe_dump(POD))
    (root / "pod.json").write_text(json.dumps(POD))
    chosen = [(i, s) for i, s in SPELLINGS if ids is None or i in ids]
    for kind in kinds:
        criteria = [
            item(f"{kind} {name} <!-- independent -->",
                 f"(\n{fill(script, user)}\n) > out/{kind}.{name}.txt 2>&1 || true")
            for name, script in chosen
        ]  # fmt: skip
        meta = f"id: TASK-{kind}\ntimeout: 30\nretries: 0\n{KINDS[kind]}"
        write_task(root, f"TASK-{kind}.md", task_md(*criteria, meta=meta))
    return len(chosen)


def assert_contained(pytester: pytest.Pytester, user: User, kinds: list[str], count: int) -> None:
    pytester.makeini("[pytest]\ninfratask_require_kube_context = false\n")
    result = pytester.runpytest(
        *QUIET, "--infratask-no-writeback", "--infratask-allow-protected", str(pytester.path)
    )
    outcomes = result.parseoutcomes()
    ran = outcomes.get("passed", 0) + outcomes.get("failed", 0)
    assert ran == count * len(kinds) and "error" not in outcomes, result.stdout.str()[-3000:]
    tokens = user.tokens
    # A direct-apply task holds dev's credentials and may send them anywhere (prod would
    # refuse them); no task ever holds another context's.
    foreign = {tokens["prod token"], tokens["stage token"]}
    at_prod = foreign if "direct" in kinds else {*foreign, tokens["dev token"]}
    assert user.prod.called_with(at_prod) == [], "a request reached prod"
    dev = user.dev.called_with({tokens["dev token"]})
    assert user.dev.called_with(foreign) == [], "dev was called with another context's token"
    if "direct" not in kinds:
        assert [(r.method, r.path) for r in dev if r.method in WRITES] == []
    if kinds == ["unpinned"]:
        assert dev == [], "a task that pins no context reached a cluster"
    else:  # the pinned context is reachable: the log above could have shown a breach
        assert any(r.method == "GET" for r in dev)
    leaks = {}
    for path in sorted((pytester.path / "out").iterdir()):
        kind = path.name.split(".")[0]
        found = user.leaks(path.read_text(errors="replace"),
                           allowed=("dev token",) if kind == "direct" else ())  # fmt: skip
        if found:
            leaks[path.name] = found
    assert leaks == {}, "the user's credentials were readable in the sandbox"


def test_the_spellings_that_got_through_are_contained(
    pytester: pytest.Pytester, user: User
) -> None:
    assert len(FAST) >= 20 and {name for name, _ in SPELLINGS} >= FAST
    kinds = ["deployment", "unpinned"]  # no text lint refuses their writes: construction must
    count = spelling_tasks(pytester.path, user, kinds, FAST)
    assert_contained(pytester, user, kinds, count)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_spelling_is_contained(pytester: pytest.Pytester, user: User, kind: str) -> None:
    assert len(SPELLINGS) >= 100
    count = spelling_tasks(pytester.path, user, [kind], None)
    assert_contained(pytester, user, [kind], count)


def test_without_the_sandbox_the_same_spellings_reach_prod(
    pytester: pytest.Pytester, user: User
) -> None:
    """The control: these assertions see a breach when there is one."""
    kinds = ["configuration"]
    count = spelling_tasks(pytester.path, user, kinds, {"unset-get", "cat-home-config"})
    pytester.makeini("[pytest]\ninfratask_bwrap = /nonexistent/bwrap\n")
    result = pytester.runpytest(*QUIET, "--infratask-no-writeback", str(pytester.path))
    result.assert_outcomes(passed=count)
    assert user.prod.called_with({user.tokens["prod token"]})
    assert "prod token" in user.leaks((pytester.path / "out" / "configuration.cat-home-config"
                                       ".txt").read_text())  # fmt: skip


def test_an_unpinned_task_has_no_cluster_and_no_default(pytester: pytest.Pytester) -> None:
    """No kubeconfig at all, no context: kubectl fails instead of falling back to its
    built-in localhost:8080."""
    pytester.makeini("[pytest]\ninfratask_require_kube_context = false\n")
    seen, said = pytester.path / "seen.txt", pytester.path / "said.txt"
    write_task(pytester.path, "TASK-001.md", task_md(item("Pods", (
        f'cat "$KUBECONFIG" > {seen}; kube""ctl get pods -v=6 > {said} 2>&1'
    ))))  # fmt: skip
    pytester.runpytest(*QUIET, "--infratask-no-writeback", str(pytester.path)).assert_outcomes(
        failed=1
    )
    assert yaml.safe_load(seen.read_text())["contexts"] == []
    text = said.read_text()
    assert "localhost:8080" not in text and "infratask-no-kube-context" in text, text


# -- the proxy is private ---------------------------------------------------------------------


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_read_only_proxy_serves_only_the_tasks_commands(
    pytester: pytest.Pytester, user: User
) -> None:
    """Another local user finds the gate's port (it is no secret) but not the token; the
    proxy itself listens on a socket only this user can reach; no credential is on disk."""
    write_task(pytester.path, "TASK-001.md", task_md(
        item("Hold the proxy", 'awk \'/server:/{print $2}\' "$KUBECONFIG" > server.txt; '
             "while [ ! -e checked ]; do sleep 0.05; done"),
        meta="id: TASK-001\nlabels: [infrastructure]\nkube_context: dev",
    ))  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *QUIET, "TASK-001.md"],
                            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        server = pytester.path / "server.txt"
        wait_for(lambda: (server.exists() and server.read_text()) or proc.poll() is not None,
                 what="the criterion to start")  # fmt: skip
        url = server.read_text().strip()
        base, token = url.rsplit("/", 1)
        pods = "/api/v1/namespaces/default/pods"
        assert _get(f"{base}/api/v1/secrets")[0] == 403
        assert _get(f"{base}/{token[:-1]}x{pods}")[0] == 403
        assert _get(f"{base}{pods}")[0] == 403
        status, body = _get(f"{url}{pods}")
        assert status == 200 and "api" in body  # the token is what opens it
        assert _get(f"{url}{pods}/api", "DELETE")[0] in (403, 405)
        _proxy_is_private(proc.pid, token, user)
        (pytester.path / "checked").touch()
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert token not in out, "the gate's token was not masked"
    assert not list(Path("/tmp").glob(f"infratask-proxy-{proc.pid}-*")), "socket dir left"


def _proxy_is_private(pid: int, token: str, user: User) -> None:
    [folder] = Path("/tmp").glob(f"infratask-proxy-{pid}-*")
    assert folder.stat().st_mode & 0o077 == 0, "the proxy's socket is reachable by others"
    [proxy] = [p for p in _children_of(pid) if b"kubectl proxy " in _cmdline(p)]
    argv = _cmdline(proxy).decode()
    assert "--unix-socket" in argv and token not in argv and "/proc/self/fd/" in argv
    secret = user.tokens["dev token"].encode()
    on_disk = [p for p in _walk(Path("/tmp")) if user.home not in p.parents
               and _holds(p, secret)]  # fmt: skip
    assert on_disk == [], "a credentialed kubeconfig is on disk"


def _walk(root: Path) -> list[Path]:
    """Every path under ``root``; other runs' directories may vanish during the walk
    (``os.walk`` skips them where ``Path.rglob`` raises)."""
    return [Path(d, n) for d, dirs, files in os.walk(root) for n in (*dirs, *files)]


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _holds(path: Path, secret: bytes) -> bool:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1 << 20:
            return False
        return secret in path.read_bytes()
    except OSError:
        return False


def test_the_plugins_own_calls_use_credentials_from_memory(
    user: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned context with its CA inlined as data: the Kubernetes client reads it
    through /proc from memory, and writes no copy of it to disk."""
    from pytest_infratask.clients import cluster
    from pytest_infratask.clients.kubeconfig import PrivateKube, inlined, only

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    data = tmp_path / "inlined.yaml"
    data.write_text(yaml.safe_dump(inlined(only("dev", os.environ))))
    kube = PrivateKube("dev", True, {"KUBECONFIG": str(data)})
    try:
        path = kube.direct()
        assert path.startswith(f"/proc/{os.getpid()}/fd/")
        config = yaml.safe_load(Path(path).read_text())
        assert config["clusters"][0]["cluster"]["certificate-authority"].startswith("/proc/")
        from kubernetes import client

        pods = client.CoreV1Api(cluster.load_api(path, "dev")).list_namespaced_pod("default")
        assert [p.metadata.name for p in pods.items] == ["api"]
    finally:
        kube.close()
    assert list((tmp_path / "tmp").iterdir()) == [], "the client wrote credentials to disk"
    assert user.dev.called_with({user.tokens["dev token"]})


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "not declared"])
def test_commands_write_their_work_tree_and_the_paths_declared_writable(
    pytester: pytest.Pytester, tmp_path: Path, declared: bool
) -> None:
    """Elsewhere the system is read-only, and /tmp private: a write there stays in the
    sandbox."""
    outside = tmp_path / "cache"
    outside.mkdir()
    meta = f"id: TASK-001\nwritable: [{outside}]" if declared else "id: TASK-001"
    write_task(pytester.path, "TASK-001.md", task_md(item("Write", (
        f"touch here; touch {outside}/there || true; touch /etc/infratask-test 2>/dev/null "
        "|| echo read-only > refused"
    )), meta=meta))  # fmt: skip
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=1)
    assert (pytester.path / "here").exists() and (pytester.path / "refused").exists()
    assert (outside / "there").exists() is declared


# -- what a task may not set; where no sandbox can be made --------------------------------


@pytest.mark.parametrize("name", RESERVED_ENV)
def test_env_cannot_move_the_credentials(pytester: pytest.Pytester, name: str) -> None:
    marker = pytester.path / "ran"
    write_task(pytester.path, "TASK-001.md", task_md(
        item("Run", f"touch {marker}"), meta=f"id: TASK-001\nenv:\n  {name}: /elsewhere"
    ))  # fmt: skip
    result = pytester.runpytest(*QUIET, str(pytester.path))
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*TASK-001.md:*env: {name} cannot be set by a task*"])
    assert not marker.exists()


def _unsandboxed_run(pytester: pytest.Pytester, *args: str) -> tuple[subprocess.CompletedProcess[
        str], Path]:  # fmt: skip
    pytester.makeini("[pytest]\ninfratask_bwrap = /nonexistent/bwrap\n")
    for n in (1, 2):
        write_task(pytester.path, f"TASK-00{n}.md", task_md(
            item("One", f"touch ran-{n}-1"), item("Two", f"touch ran-{n}-2"),
            meta=f"id: TASK-00{n}",
        ))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, "."],
                          cwd=pytester.path, capture_output=True, text=True,
                          timeout=DEADLINE, check=False)  # fmt: skip
    return done, pytester.path / "ran-1-1"


def test_require_sandbox_refuses_to_run_without_one(pytester: pytest.Pytester) -> None:
    done, ran = _unsandboxed_run(pytester, "--infratask-require-sandbox")
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert (
        "--infratask-require-sandbox: commands cannot run in a sandbox: /nonexistent/bwrap "
        "not found" in done.stderr
    )
    assert not ran.exists(), "a command ran"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_without_a_sandbox_a_run_says_so_once(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    done, ran = _unsandboxed_run(pytester, *workers)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in (done.stdout + done.stderr).splitlines() if "not sandboxed" in line]
    assert said == ["infratask: commands are not sandboxed: /nonexistent/bwrap not found "
                    "(install bubblewrap, or set ini infratask_bwrap)"]  # fmt: skip
    assert ran.exists()


# -- nothing outlives the run ------------------------------------------------------------------

DAEMONS = """\
setsid sh -c 'exec sleep 300' >/dev/null 2>&1 </dev/null &
( setsid sh -c 'exec sleep 300' >/dev/null 2>&1 </dev/null & )
sh -c 'exec sleep 300' &
touch started
sleep 300
"""


def _killed_mid_criterion(
    root: Path, user: User, stop: signal.Signals, workers: tuple[str, ...] = ()
) -> float:
    """A run killed while a criterion's daemons run: none of its processes, its proxy
    or its private files remain. ``workers``: xdist's ``-n``, the signal going to the
    controller alone. Returns the seconds from the signal to the run's end."""
    marker = f"infratask-test-{uuid.uuid4().hex}"
    tmpdir = root / f"tmp-{marker[-8:]}"
    tmpdir.mkdir()
    started = root / "started"
    started.unlink(missing_ok=True)
    path = write_task(root, "TASK-001.md", task_md(
        item("Start daemons, then hang", DAEMONS),
        meta=f"id: TASK-001\nlabels: [infrastructure]\nkube_context: dev\n"
             f"env:\n  RUN_MARKER: {marker}",
    ))  # fmt: skip
    plugins = ("-p", "no:cacheprovider") if workers else QUIET
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *plugins, *workers, str(path)],
                            cwd=root,
                            env={**os.environ, "TMPDIR": str(tmpdir)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for(lambda: started.exists() or proc.poll() is not None, what="the daemons")
        assert processes_with(marker), "no process of the run carries the marker"
        runs = {str(proc.pid), *map(str, _children_of(proc.pid))}  # with xdist: the workers
        signalled = time.monotonic()
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=DEADLINE)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    if stop is signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 2 and f"{stop.name} received" in out, out
    assert none_left(marker, "the run's processes and its proxy") == []
    secret = user.tokens["dev token"].encode()
    assert [p for p in [*tmpdir.rglob("*"), *Path("/tmp").glob("infratask-*/*")]
            if _holds(p, secret)] == [], "a private credential file was left"  # fmt: skip
    sockets = [p for p in Path("/tmp").glob("infratask-proxy-*") if p.name.split("-")[2] in runs]
    if stop is not signal.SIGKILL:
        assert sockets == [], "the proxy's socket directory was left"
    assert "- [ ] Start daemons, then hang" in path.read_text()
    return took


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: s.name)  # fmt: skip
def test_a_signalled_run_leaves_nothing(
    pytester: pytest.Pytester, user: User, stop: signal.Signals
) -> None:
    _killed_mid_criterion(pytester.path, user, stop)


def test_a_terminated_xdist_run_leaves_nothing(pytester: pytest.Pytester, user: User) -> None:
    """CI cancels the controller alone; the workers running the commands clean up too."""
    _killed_mid_criterion(pytester.path, user, signal.SIGTERM, ("-n", "1"))


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: s.name)  # fmt: skip
def test_signalled_runs_leave_nothing_trials(
    pytester: pytest.Pytester, user: User, stop: signal.Signals
) -> None:
    for _ in range(SIGNAL_TRIALS):
        _killed_mid_criterion(pytester.path, user, stop)


def test_a_killed_runs_socket_directory_is_swept(pytester: pytest.Pytester) -> None:
    """SIGKILL leaves the proxy's (empty of credentials) socket directory; the next run
    that starts a proxy removes it."""
    from pytest_infratask.clients.apiproxy import sweep_stale

    stale = Path("/tmp") / f"infratask-proxy-{_dead_pid()}-test"
    stale.mkdir(mode=0o700)
    (stale / "api.sock").touch()
    sweep_stale()
    assert not stale.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_plugins_own_installation_stays_visible_under_a_private_tmp(tmp_path: Path) -> None:
    """A virtual environment under ``/tmp`` (where the sandbox mounts an empty tmpfs)
    still shows, read-only: ``infratask`` and the rest of the plugin's environment run
    in the sandbox as outside it; the rest of ``/tmp`` stays hidden."""
    from pytest_infratask.run.sandbox import Sandbox, mounts

    venv, other, work = tmp_path / "venv", tmp_path / "other", tmp_path / "work"
    for folder in (venv / "bin", other, work):
        folder.mkdir(parents=True)
    (venv / "bin" / "tool").write_text("installed\n")
    (other / "secret").write_text("private\n")

    def inside(installation: list[Path]) -> subprocess.CompletedProcess[str]:
        sandbox = Sandbox("bwrap", mounts(work, [work], [], {}, installation=installation), b"")
        script = f"cat {venv}/bin/tool; cat {other}/secret; echo change > {venv}/bin/tool"
        argv, fds = sandbox.command(["bash", "-c", script], work)
        try:
            return subprocess.run(argv, capture_output=True, text=True, pass_fds=fds)
        finally:
            sandbox.close()

    shown = inside([venv])
    assert shown.stdout == "installed\n", shown.stderr
    assert "secret: No such file" in shown.stderr and "Read-only file system" in shown.stderr
    assert (venv / "bin" / "tool").read_text() == "installed\n"
    assert inside([]).stdout == ""
