"""A criterion's attempt in overlays of its repositories' work trees (``run.overlay``):
its commands hold no lock, so tasks sharing a repository run at the same time. The
repository is held only to see where the attempt starts, and, once it passed, to
apply what it wrote, check it, record and stage it. An attempt that wrote a path
another task changed since it began (or applied and has not committed yet, when the
run commits) is dropped, waits for that task, and runs again from the fresh state."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from pytest_infratask.core.outcome import Outcome
from pytest_infratask.core.results import CommandResult
from pytest_infratask.core.task import Criterion
from pytest_infratask.orchestrator.attempts import AttemptLog
from pytest_infratask.orchestrator.commands import Commands
from pytest_infratask.orchestrator.taskrun import TaskRun
from pytest_infratask.record.git import (
    Files,
    Mark,
    Snapshot,
    Tracker,
    mark,
    same_file,
    untouched,
)
from pytest_infratask.record.overlay import Clash, apply, changes, diff, since
from pytest_infratask.record.recovery import ATTEMPT_VAR, alive, own_stamp
from pytest_infratask.run.overlay import Layer, drop, unavailable
from pytest_infratask.run.process import let_go_ahead, mount_ahead
from pytest_infratask.run.sandbox import CommandEnv
from pytest_infratask.util.locks import LockTimeout

POLL = 0.05
"""Seconds between looks at whether the task an attempt waits for has ended."""


GIT = re.compile(r"(^|[\s;&|(`$])git(\s|$)", re.MULTILINE)
"""A block that runs git changes the repository's shared state (its index, HEAD),
which no overlay holds: such a criterion takes turns, so a failure rolls it back."""


def eligible(run: TaskRun, criterion: Criterion) -> bool:
    """Whether the criterion would run in overlays where they mount (``ready``): never
    for a service (its sandbox outlives the attempt), a block that runs git, or with
    ini ``infratask_overlay = false``."""
    if not run.settings.overlay or criterion.service or not run.tracker.repos:
        return False
    return not any(GIT.search(block.script) for block in criterion.commands)


def ready(run: TaskRun, env: CommandEnv, criterion: Criterion) -> bool:
    """Whether the criterion runs in overlays: it is ``eligible``, its commands run in
    a sandbox, and an overlay mounts over each of its repositories (else, said once,
    the repositories' tasks take turns as before)."""
    if not eligible(run, criterion):
        return False
    if env.sandbox is None:
        run.say_once(
            "infratask: commands are not sandboxed: tasks in one git repository take turns"
        )
        return False
    for repo in run.tracker.repos.values():
        probe = _folder(repo.git_dir) / f"probe-{os.getpid()}"
        why = unavailable(Layer(repo.root, probe / "upper", probe / "work"))
        if why is not None:
            run.say_once(f"infratask: tasks in {repo.root} take turns: {why}")
            return False
    return True


def _folder(git_dir: Path) -> Path:
    return git_dir / "infratask" / "overlay"


class Session:
    """One attempt's overlays (an upper directory per repository), and the ``Rewind``
    of its retries: a failed try's upper directory is emptied, or put back as a later
    block found it.

    The directories are the task's (``kept``, dropped with the run): made at its first
    attempt in a repository, emptied after each. Their name carries the run's process,
    so a run that dies leaves them to the next to clear."""

    def __init__(self, tracker: Tracker, log: AttemptLog, kept: dict[Path, Path]) -> None:
        self.tracker, self.log = tracker, log
        self.token = secrets.token_hex(8)
        self.dirs: dict[Path, Path] = {}
        for root, repo in tracker.repos.items():
            folder = kept.get(root)
            if folder is None:
                name = f"{os.getpid()}-{own_stamp()}-{self.token}"
                folder = kept[root] = _folder(repo.git_dir) / name
                _clear_stale(folder.parent)
                self._fresh(folder)
            self.dirs[root] = folder
        self.layers = tuple(Layer(root, d / "upper", d / "work") for root, d in self.dirs.items())
        self.saved = 0
        self.rewound = False
        self.quiet = False
        """The commands wrote nothing, and nobody held the repositories while they ran
        (``_tried``, before anything is applied)."""

    @staticmethod
    def _fresh(folder: Path, source: Path | None = None) -> None:
        drop(folder / "upper")
        drop(folder / "work")
        (folder / "work").mkdir(parents=True)
        if source is None:
            (folder / "upper").mkdir()
        else:  # the overlay's own files (whiteouts, attributes) copied as they are
            subprocess.run(["cp", "-a", str(source), str(folder / "upper")], check=True)

    def first(self) -> object:
        return None

    def checkpoint(self) -> object:
        self.saved += 1
        for folder in self.dirs.values():
            target = folder / f"saved-{self.saved}"
            subprocess.run(["cp", "-a", str(folder / "upper"), str(target)], check=True)
        return self.saved

    def back(self, start: object, attempt: int, line: str) -> str:
        self.rewound = True
        files = self.dropped(attempt, "retried", line, start)
        for folder in self.dirs.values():
            saved = folder / f"saved-{start}" if start is not None else None
            self._fresh(folder, saved)
        return files

    def dropped(self, attempt: int, reason: str, line: str, start: object = None) -> str:
        """Note what the attempt wrote (since checkpoint ``start``), which never
        reaches the work tree, as a rollback of it (the files and their diff);
        returns the files."""
        found = self.changes()
        if start is not None:
            for root, folder in self.dirs.items():
                newer = since(folder / f"saved-{start}", folder / "upper")
                found[root] = [p for p in found.get(root, []) if p in newer]
            found = {root: paths for root, paths in found.items() if paths}
        labels = self.tracker.labels(found)
        text = "".join(
            diff(root, self.dirs[root] / "upper", paths) for root, paths in found.items()
        )
        self.log.undone_as(attempt, reason, line, labels, text)
        return ", ".join(labels)

    def changes(self) -> Files:
        """What applying the attempt would change, per repository (its own files aside)."""
        found: Files = {}
        for root, folder in self.dirs.items():
            paths = self.tracker.task_paths(root, changes(root, folder / "upper"))
            if paths:
                found[root] = paths
        return found

    def clash(
        self, since: dict[Path, int], before: dict[Path, Snapshot], held: bool
    ) -> Clash | None:
        """A path the attempt wrote that changed under it: applied by another task
        since it began (or claimed by one, ``held``), or edited outside the plugin."""
        for root, paths in self.changes().items():
            repo = self.tracker.repos[root]
            found = repo.claims.clash(self.tracker.task_id, since[root], paths, held)
            if found is not None:
                return found
            now = repo.snapshot()
            moved = next((p for p in paths if before[root].get(p) != now.get(p)), None)
            if moved is not None:
                return Clash("", moved)
        return None

    def empty(self) -> bool:
        """Whether the attempt wrote nothing at all (its own files included)."""
        return not any(any(os.scandir(d / "upper")) for d in self.dirs.values())

    def apply(self) -> Files:
        """Bring the attempt's writes into the work trees; what they changed."""
        files = self.changes()
        for root, folder in self.dirs.items():
            apply(root, folder / "upper")
        return files

    def kept_as_mounted(self, opened: Mark) -> bool:
        """Whether the overlays the commands left mounted show what the next attempt
        would see: the commands wrote nothing while nobody held the repositories
        (``quiet``), the attempt was not rewound, and the task file (ticked in place)
        is the same file. Then the next attempt takes them on as they stand."""
        return self.quiet and not self.rewound and same_file(self.tracker, opened)

    def drop(self) -> None:
        """Empty the directories for the task's next attempt: the upper directory and
        the checkpoints go; the work directory is the kernel's to clear as it mounts."""
        for folder in self.dirs.values():
            for entry in os.scandir(folder):
                if entry.name == "upper" and not any(os.scandir(entry.path)):
                    continue
                if entry.name != "work":
                    drop(Path(entry.path))
            if not (folder / "upper").is_dir():
                (folder / "upper").mkdir()


def _clear_stale(folder: Path) -> None:
    """The overlays of runs that died (their attempts never reached the work tree)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid, _, rest = name.partition("-")
        stamp = rest.rpartition("-")[0]
        if pid.isdigit() and not alive(int(pid), None if stamp == "None" else stamp):
            drop(folder / name)


def attempted(commands: Commands) -> Outcome:
    """The criterion's attempt in overlays, run again after each task whose edits it
    met (those runs are not retries), until it is applied or fails."""
    run = commands.run
    reruns: list[str] = []
    started = time.monotonic()
    while True:
        with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
            unsettled = run.undo.take_unsettled()
            if unsettled:
                return _unsettled(commands, unsettled)
            since = {root: repo.claims.seq() for root, repo in run.tracker.repos.items()}
            before = run.tracker.snapshots()
            run.tracker.carry()  # the commands write only their overlays
            ahead, run.mounted_ahead = run.mounted_ahead, None
            if ahead is not None and not untouched(run.tracker, ahead):
                let_go_ahead(commands.env)  # its overlays would show a stale work tree
        outcome, clash = _once(commands, since, before, mark(run.tracker))
        if outcome is not None:
            undone = (*outcome.rolled_back, *commands.log.undone)
            return replace(outcome, notes=(*outcome.notes, *reruns), rolled_back=undone)
        assert clash is not None
        reruns.append(_wait_for(run, clash, started))


def _once(
    commands: Commands, since: dict[Path, int], before: dict[Path, Snapshot], opened: Mark
) -> tuple[Outcome | None, Clash | None]:
    run = commands.run
    session = Session(run.tracker, commands.log, run.overlays)
    try:
        found = _tried(commands, session, since, before, opened)
        reuse = session.kept_as_mounted(opened)
    finally:
        session.drop()
    # Recorded: the next attempt's overlays (these directories, emptied) are mounted
    # for the shell started ahead now, while pytest reports this one, or those the
    # commands left mounted are kept for it. The next attempt lets the shell go unless
    # nothing held the repositories in between.
    mount_ahead(commands.env, session.layers, reuse)
    run.mounted_ahead = mark(run.tracker)
    return found


def _tried(
    commands: Commands,
    session: Session,
    since: dict[Path, int],
    before: dict[Path, Snapshot],
    opened: Mark,
) -> tuple[Outcome | None, Clash | None]:
    run = commands.run
    env = commands.env.with_values({ATTEMPT_VAR: session.token})
    env.layers = session.layers
    results, attempts = commands.commands(env, session)
    if results and not results[-1].ok:
        return commands.failure(results, attempts, session), None
    with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
        session.quiet = untouched(run.tracker, opened) and session.empty()
        clash = session.clash(since, before, run.settings.commit)
        if clash is not None:
            return None, clash
        return _applied(commands, session, results, attempts), None


def _applied(
    commands: Commands, session: Session, results: list[CommandResult], attempts: int
) -> Outcome:
    """Apply, check and record under the repositories' lock, journaled as an attempt
    of its own: a run killed half way is rolled back by the next one."""
    run = commands.run
    writes = not session.empty()
    if writes:  # its state before is taken afresh: an edit from outside is not its own
        run.tracker.drop()
    attempt = run.undo.begin(commands.c.number, commands.c.raw_line, writes)
    try:
        files = session.apply()
        outcome = commands.checked(results, attempts, attempt)
        if outcome.status.satisfies:
            for root, paths in files.items():
                run.tracker.repos[root].claims.applied(run.task.id, paths)
    except BaseException:
        run.undo.abandon(attempt)
        raise
    if commands.log.unrestored:
        run.undo.leave(attempt)
    else:
        run.undo.end(attempt)
    return outcome


def _wait_for(run: TaskRun, clash: Clash, started: float) -> str:
    """Tell whose edit the attempt met, wait until that task ends (its run's lock
    wait at most), and say why the attempt runs again."""
    deadline = started + run.settings.lock_wait
    if not clash.task:
        run.waiting_for(f"{clash.path} changed outside this task while it ran: running it again")
        if time.monotonic() > deadline:
            raise LockTimeout(
                f"{clash.path} (changed while the commands ran)",
                "another run",
                run.settings.lock_wait,
            )
        return f"rerun: {clash.path} changed while the commands ran"
    run.waiting_for(f"waiting for {clash.task}, which edits {clash.path}")
    repos = list(run.tracker.repos.values())
    # Its edit is in the work tree already; only a commit of its own must not carry
    # this task's edit of the same file too: with --infratask-commit, wait for it.
    while run.settings.commit and any(r.claims.holds(clash.task) for r in repos):
        if time.monotonic() > deadline:
            raise LockTimeout(
                f"{clash.path}, which {clash.task} edits", clash.task, run.settings.lock_wait
            )
        time.sleep(POLL)
    return f"rerun after {clash.task}, which edits {clash.path}"


def _unsettled(commands: Commands, unsettled: list[str]) -> Outcome:
    return commands.drafts.blocked(
        "an interrupted attempt could not be rolled back: " + "; ".join(unsettled),
        ["put those files back by hand (git status, git diff), then rerun"],
        commands.target,
    )
