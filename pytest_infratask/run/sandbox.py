"""Each command runs in a bubblewrap sandbox: what it can see and what outlives it
are decided by construction, not by reading its text.

The sandbox (``bwrap``) shows the system read-only and the task's work tree (the git
repository of its directory, and the allowed root holding it) plus the paths the
task declares ``writable`` read-write. ``/tmp`` (and ``$TMPDIR``) are private and
empty. Hidden: the user's kubeconfigs (``~/.kube`` and every file ``KUBECONFIG``
names), registry logins (docker's ``config.json``, containers' ``auth.json``,
``REGISTRY_AUTH_FILE``), the plugin's lock directory and other runs' temporary
files. The command's ``KUBECONFIG`` is ``SANDBOX_KUBECONFIG``, a read-only file
copied in from memory: the read-only proxy form, the pinned context alone, or no
context at all.

One sandbox serves a task: its fork server (``run.served``) starts each command in
it. Commands share its pid namespace, with a fresh ``/proc`` (nothing of the run's
processes or environments), no capabilities (see ``ROOT_CAPS``), and the network
shared. The namespace dies with the server: when the task ends, when the run kills
it, and when the run itself dies (``--die-with-parent``, also after SIGKILL), every
process in it ends too, daemons included. A service's command, which outlives its
criterion, has a sandbox of its own (``Sandbox.command``). When another task follows
in the process, its sandbox starts ahead, idle, beside this one (``sandbox_for``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.clients.kubeconfig import MemFile
from pytest_infratask.core.credentials import kubeconfig_paths, registry_auth_files
from pytest_infratask.core.masking import Environment
from pytest_infratask.run.overlay import Layer
from pytest_infratask.run.served import ForkServer, mount_points
from pytest_infratask.util.gitdir import git_head
from pytest_infratask.util.locks import LockDirError, lock_dir

SANDBOX_KUBECONFIG = "/tmp/.infratask/kubeconfig"
"""Where commands find their kubeconfig inside the sandbox (``KUBECONFIG``)."""
# Run as root, a command keeps what container tools (buildah, podman) need to make a
# user namespace of their own: every mount there is locked (the masks below cannot be
# lifted), and nothing else (no CAP_SYS_ADMIN: no umount here).
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETFCAP")
BASE = (
    "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
    "--unshare-pid", "--die-with-parent", "--cap-drop", "ALL",
    *(word for cap in ROOT_CAPS for word in ("--cap-add", cap) if os.geteuid() == 0),
)  # fmt: skip
PROBE_TIMEOUT = 30.0


class CommandEnv(Environment):
    """A command's environment, and the sandbox it runs in (None: unsandboxed). They
    travel together: the ``KUBECONFIG`` it names exists only inside that sandbox."""

    sandbox: Sandbox | None = None
    layers: tuple[Layer, ...] = ()
    """The work trees shown as overlays (``run.overlay``): set per attempt."""


_PROBED: dict[str, str | None] = {}


def unavailable(bwrap: str) -> str | None:
    """Why commands cannot run in a sandbox here (None: they can); asked once per
    program by starting an empty sandbox."""
    if bwrap not in _PROBED:
        _PROBED[bwrap] = _probe(bwrap)
    return _PROBED[bwrap]


def _probe(bwrap: str) -> str | None:
    found = shutil.which(bwrap)
    if found is None:
        return f"{bwrap} not found (install bubblewrap, or set ini infratask_bwrap)"
    try:
        done = subprocess.run(
            [found, *BASE, "--", "true"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{found} cannot start: {exc}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return f"{found} cannot create a sandbox here: {why}"
    return None


EMPTY = b"{}\n"
"""What a hidden registry login file reads as: an empty docker config or auth.json (an
empty file would be a syntax error to some tools, ``/dev/null`` unreadable)."""


@dataclass(frozen=True)
class Mounts:
    """What a task's sandbox shows differently from the read-only system."""

    writable: tuple[Path, ...] = ()
    private: tuple[Path, ...] = ()
    """Empty and writable (tmpfs): ``$TMPDIR`` (``/tmp`` always is)."""
    shown: tuple[Path, ...] = ()
    """The plugin's own installation where a private directory would hide it (a virtual
    environment under ``/tmp``): shown read-only, so the tools installed beside the
    plugin (``infratask``) run in the sandbox as outside it."""
    emptied: tuple[Path, ...] = ()
    """Directories shown empty: ``~/.kube``, the lock directory."""
    kubeconfigs: tuple[Path, ...] = ()
    """The user's kubeconfig files: each shows the task's own kubeconfig, so a command
    that drops ``KUBECONFIG`` still finds only that."""
    logins: tuple[Path, ...] = ()
    """Registry login files (and other secrets): shown as ``EMPTY``."""

    def options(self, fds: Mapping[Path, int]) -> list[str]:
        """bwrap options, outer paths first (a mount on a directory would hide one made
        inside it before); ``fds`` gives each file shown otherwise the fd to copy."""
        ops: list[tuple[int, int, list[str]]] = []
        for order, paths, option in (
            (0, self.private, "--tmpfs"),
            (1, self.shown, "--ro-bind"),
            (2, self.writable, "--bind"),
            (3, self.emptied, "--tmpfs"),
        ):
            for path in paths:
                args = [str(path)] * (1 if option == "--tmpfs" else 2)
                ops.append((len(path.parts), order, [option, *args]))
        for path in (*self.kubeconfigs, *self.logins):
            ops.append((len(path.parts), 4, ["--ro-bind-data", str(fds[path]), str(path)]))
        ops.sort(key=lambda op: op[:2])
        return [word for _, _, words in ops for word in words]


class Sandbox:
    """One task's sandbox: bwrap, the task's mounts and its commands' kubeconfig.

    ``ahead``: another task follows in this process; once this sandbox's server starts,
    a twin (same mounts, same kubeconfig, its own server) starts beside it, for that
    task to take (``sandbox_for``) instead of waiting for a server of its own."""

    def __init__(
        self,
        bwrap: str,
        mounts: Mounts,
        kubeconfig: bytes,
        serve: bool = True,
        ahead: bool = False,
    ) -> None:
        self.spec: Spec = (bwrap, mounts, kubeconfig)
        self.ahead = ahead
        self.bwrap = shutil.which(bwrap) or bwrap
        # bwrap reads each fd to its end: one in-memory file per place it is shown
        self.files = {
            **{p: MemFile("kubeconfig", kubeconfig) for p in mounts.kubeconfigs},
            **{p: MemFile("hidden", EMPTY) for p in mounts.logins},
        }
        self.kubeconfig = MemFile("kubeconfig", kubeconfig)
        self._server: ForkServer | None = None
        self.serving = serve
        """Whether commands go to the fork server; overlays too, unless ``layered`` is
        cleared (a server that could not mount one)."""
        self.layered = True
        self.options = [
            *BASE,
            *mounts.options({p: f.fd for p, f in self.files.items()}),
            "--dir", os.path.dirname(SANDBOX_KUBECONFIG),
            "--ro-bind-data", str(self.kubeconfig.fd), SANDBOX_KUBECONFIG,
        ]  # fmt: skip

    def served(self, layered: bool) -> ForkServer | None:
        """The task's fork server (``run.served``), started on first use; None once it
        could not serve (commands then start their own sandbox each). ``layered``: the
        command sees overlays, which run as root only a privileged server can mount."""
        if not self.serving:
            return None
        privileged = layered and os.geteuid() == 0
        server = self._server
        if server is None or not server.alive or (privileged and not server.privileged):
            if server is not None:
                server.close()
            fds = tuple(f.rewound() for f in (self.kubeconfig, *self.files.values()))
            # Privileged, the server holds every capability; a command keeps ROOT_CAPS.
            extra = ["--cap-add", "ALL"] if privileged else []
            keep = ROOT_CAPS if privileged else None
            self._server = ForkServer([self.bwrap, *self.options, *extra], fds, keep)
        if self.ahead:  # also for a sandbox that was started ahead itself
            self.ahead = False
            _start_spare(self.spec, layered)
        return self._server

    def command(self, argv: Sequence[str], cwd: Path) -> tuple[list[str], tuple[int, ...]]:
        """The argv running ``argv`` in ``cwd`` inside the sandbox, and the fds to pass
        (bwrap reads them whole, from the start, and closes them)."""
        fds = tuple(f.rewound() for f in (self.kubeconfig, *self.files.values()))
        return [self.bwrap, *self.options, "--chdir", str(cwd), "--", *argv], fds

    @property
    def alive(self) -> bool:
        return self._server is not None and self._server.alive

    @property
    def running(self) -> ForkServer | None:
        """The task's fork server, when it runs (None: not started, or ended)."""
        return self._server if self.serving and self.alive else None

    def binds_all(self) -> bool:
        """Whether each directory bound as the sandbox started is still mounted in it."""
        if self._server is None or not self._server.ready():
            return False
        bound = self.spec[1]
        points = mount_points(self._server)
        return all(str(path) in points for path in (*bound.writable, *bound.shown))

    def close(self, wait: bool = True) -> None:
        """End the sandbox (``wait``: and wait for its end, see ``ForkServer.close``)."""
        if self._server is not None:
            self._server.close(wait)
            self._server = None
        for memfile in (self.kubeconfig, *self.files.values()):
            memfile.close()


Spec = tuple[str, Mounts, bytes]
"""What makes two sandboxes the same: bwrap, the mounts and the commands' kubeconfig."""
_SPARE: list[Sandbox] = []
"""The sandbox started ahead for the next task: one at most."""


def _start_spare(spec: Spec, layered: bool) -> None:
    end_spare()
    twin = Sandbox(*spec)
    _SPARE.append(twin)  # first: ended with the run even if its start is cut short
    twin.served(layered)


def sandbox_for(bwrap: str, mounts: Mounts, kubeconfig: bytes, ahead: bool) -> Sandbox:
    """A task's sandbox: the one started ahead when it is the same (its server is up
    already), else a new one. Not when a directory it binds was removed since: its
    mount there shows the removed one (or none), where a new sandbox binds the one
    there now."""
    spec: Spec = (bwrap, mounts, kubeconfig)
    while _SPARE:
        twin = _SPARE.pop()
        if twin.spec == spec and twin.alive and twin.binds_all():
            twin.ahead = ahead
            return twin
        twin.close()
    return Sandbox(bwrap, mounts, kubeconfig, ahead=ahead)


def end_spare() -> None:
    """End the sandbox started ahead, unused (the run ends, or the next task differs)."""
    while _SPARE:
        _SPARE.pop().close()


def work_tree(cwd: Path, roots: Iterable[Path]) -> list[Path]:
    """Where a task's commands may write: the git repository of ``cwd`` (with its git
    directory, wherever a ``.git`` file puts it) and the allowed root holding ``cwd``."""
    cwd = cwd.resolve()
    found = [r for r in roots if r == cwd or r in cwd.parents]
    head = git_head(cwd)
    if head is not None:
        found.append(head[0])
        found += _git_dirs(head[0])
    return found or [cwd]


def _git_dirs(root: Path) -> list[Path]:
    """A linked worktree's git directory and the common one it shares, when ``.git`` is
    a file pointing there."""
    dot_git = root / ".git"
    if not dot_git.is_file():
        return []
    text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    if not text.startswith("gitdir:"):
        return []
    git_dir = (root / text.removeprefix("gitdir:").strip()).resolve()
    found = [git_dir]
    with contextlib.suppress(OSError):
        common = (git_dir / "commondir").read_text(encoding="utf-8").strip()
        found.append((git_dir / common).resolve())
    return found


def own_installation() -> list[Path]:
    """Where the running plugin comes from: the interpreter's environment, its script
    directory, and the directory holding the package (an editable install's source)."""
    return [
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sysconfig.get_path("scripts")),
        Path(__file__).resolve().parents[2],
    ]


def _existing(paths: Iterable[Path]) -> list[Path]:
    """``paths`` that exist, as written and with links resolved (a link's target would
    otherwise stay readable), once each."""
    found: list[Path] = []
    for path in paths:
        path = path.expanduser()
        for form in (Path(os.path.abspath(path)), path.resolve()):
            if form.exists() and form not in found:
                found.append(form)
    return found


def mounts(
    cwd: Path,
    roots: Iterable[Path],
    writable: Iterable[Path],
    env: Mapping[str, str],
    secret_files: Iterable[Path] = (),
    installation: Iterable[Path] | None = None,
) -> Mounts:
    """The mounts of a task whose commands run in ``cwd`` with ``env``: every place
    ``env`` (or the home directory) says kubeconfigs and registry logins are kept,
    whichever variables a tool honours first, is hidden."""
    homes = [Path(env.get("HOME") or Path.home()), Path.home()]
    kube_dirs = _existing(home / ".kube" for home in homes)
    default = [d / "config" for d in kube_dirs]  # shown in the emptied ~/.kube, always
    found = _existing([*default, *kubeconfig_paths(env)])
    kubeconfigs = list(dict.fromkeys([*default, *(p for p in found if p.is_file())]))
    plain = {k: v for k, v in env.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    logins = [
        *registry_auth_files(env, shadowed=True),
        *registry_auth_files(plain, shadowed=True),
        *secret_files,
    ]
    logins += (home / ".config" / "containers" / "auth.json" for home in homes)
    emptied = [*kube_dirs]
    with contextlib.suppress(LockDirError):
        emptied.append(lock_dir())
    private = []
    for temp in (Path(env.get("TMPDIR") or "/tmp"), Path(tempfile.gettempdir())):
        temp = temp.resolve()
        if temp.is_dir() and Path("/tmp") not in (temp, *temp.parents) and temp not in private:
            private.append(temp)
    hidden = [Path("/tmp"), *private]
    own = own_installation() if installation is None else installation
    shown = [p for p in _existing(own) if any(h == p or h in p.parents for h in hidden)]
    rw = dict.fromkeys(p.expanduser().resolve() for p in [*work_tree(cwd, roots), *writable])
    return Mounts(
        # A declared path that does not exist yet stays read-only: the command's error
        # names it.
        writable=tuple(p for p in rw if p.exists()),
        private=tuple(private),
        shown=tuple(shown),
        emptied=tuple(emptied),
        kubeconfigs=tuple(kubeconfigs),
        logins=tuple(p for p in _existing(logins) if p.is_file() and p not in kubeconfigs),
    )
