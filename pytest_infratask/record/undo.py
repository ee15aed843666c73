"""A criterion's attempt in the task's repositories: its starting state recorded and
journaled before the first command, put back when the attempt fails or is
interrupted, and what a run that died left behind settled by the next run before it
reads any state (see ``record.recovery`` for the files, ``record.attempt`` for the
state)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pytest_infratask.record.attempt import Start, Undone
from pytest_infratask.record.git import Files, RepoTracker, Snapshot, Tracker
from pytest_infratask.record.recovery import (
    ATTEMPT_VAR,
    AttemptJournal,
    clear_stale_locks,
    end_processes,
    marked,
    stale_journals,
    writing,
)


@dataclass
class Attempt:
    """One attempt: the state it started from in each repository, and its journals."""

    before: dict[Path, Snapshot]
    """Each repository's status before the commands, for attribution."""
    starts: dict[Path, Start]
    journals: dict[Path, AttemptJournal]
    token: str
    passed: bool = False
    writes: bool = True
    """False: the step cannot change the work tree, so its state after is its state
    before (an overlay's attempt that wrote nothing)."""

    @property
    def environment(self) -> dict[str, str]:
        """What the attempt's commands carry, so a later run can end what they leave."""
        return {ATTEMPT_VAR: self.token}


@dataclass
class Recovered:
    """An attempt a run that died left behind, settled on the next turn."""

    owner: str
    rollback: Undone | None = None
    staged: list[str] = field(default_factory=list)
    locks: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.locks and not self.owner:
            return "removed the git lock(s) a run that died left: " + ", ".join(self.locks)
        if self.rollback is None:
            return f"{self.owner} had passed before its run ended: staged " + (
                ", ".join(self.staged) or "nothing"
            )
        done = ", ".join(self.rollback.files) or "nothing had changed"
        return f"rolled back the interrupted attempt of {self.owner}: {done}"


class Undo:
    """Attempts of one task's criteria, over its tracker's repositories."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.recovered: list[Recovered] = []
        self.unsettled: list[str] = []
        tracker.on_entry.append(self.settle)

    def begin(self, number: int, line: str, writes: bool = True) -> Attempt:
        """The state before a criterion's first command, journaled in each repository
        unless ``writes`` is False: a step that cannot change the work tree leaves
        nothing for a kill to put back."""
        t = self.tracker
        before = t.snapshots()
        # nothing to put back, so no start is saved either (a blob lookup per dirty path)
        starts = (
            {root: repo.view.snapshot(before[root]) for root, repo in t.repos.items()}
            if writes
            else {}
        )
        token = secrets.token_hex(8)
        journals = {
            root: AttemptJournal.begin(
                t.repos[root].attempts_dir, t.task_id, t.task_file, (number, line), start, token
            )
            for root, start in starts.items()
        }
        return Attempt(before, starts, journals, token, writes=writes)

    def checkpoint(self) -> dict[Path, Start]:
        """The state now, to roll a later block's retry back to."""
        return {
            root: repo.view.snapshot(repo.snapshot()) for root, repo in self.tracker.repos.items()
        }

    def rollback(self, starts: dict[Path, Start]) -> Undone:
        """Put every path the attempt changed back as ``starts`` had it: what was put
        back across the task's repositories (files labelled as the report shows them)."""
        done = Undone()
        for root, start in starts.items():
            repo = self.tracker.repos[root]
            self._put_back(repo, start, self.tracker.task_file, done)
        return done

    def _put_back(self, repo: RepoTracker, start: Start, task_file: Path, done: Undone) -> None:
        changed = repo.view.diff(start, repo.snapshot())
        paths = self.tracker.task_paths(repo.root, changed, task_file)
        if not paths:
            return
        with repo.index_lock(), writing(repo.git_dir):
            undone = repo.view.rollback(start, paths)
        repo.drop()  # the work tree changed under the kept status
        done.files += [self.tracker.label(repo, p) for p in undone.files]
        done.diff += undone.diff
        done.problems += undone.problems

    def passed(self, attempt: Attempt, files: Files) -> None:
        """The attempt passed: from here its tick, not its journal, says what stays."""
        attempt.passed = True
        for root, journal in attempt.journals.items():
            journal.update(phase="passed", files=files.get(root, []))

    def end(self, attempt: Attempt) -> None:
        for journal in attempt.journals.values():
            journal.remove()

    def leave(self, attempt: Attempt) -> None:
        """Give the attempt up with its journals in place: the next turn on each
        repository settles it (or blocks, while it cannot be put back)."""
        for journal in attempt.journals.values():
            journal.release()

    def abandon(self, attempt: Attempt) -> None:
        """The run is interrupted in the middle of the attempt: roll it back now, unless
        it passed (then the next run reads its tick and keeps or rolls back)."""
        if not attempt.passed:
            # A command can outlive the interruption: one started as the signal came,
            # before its process was known to be ended.
            end_processes(attempt.token)
        if attempt.passed or self.rollback(attempt.starts).problems:
            self.leave(attempt)
        else:
            self.end(attempt)

    # -- what a run that died left -----------------------------------------------------
    def settle(self, repo: RepoTracker) -> None:
        """On a turn on ``repo``: its stale git locks and interrupted attempts."""
        stale = stale_journals(repo.attempts_dir)
        if stale or marked(repo.git_dir):
            since = [float(j.data.get("time") or 0) for j in stale]
            with repo.index_lock():
                locks = clear_stale_locks(repo.git_dir, since)
            if locks:
                self._recovered(Recovered("", locks=locks))
        for journal in stale:
            recovered = Recovered(journal.owner)
            if journal.data.get("phase") == "passed" and journal.ticked():
                problem = self._keep(repo, journal, recovered)
            else:
                journal.end_command()  # (a service of a passed attempt stays running)
                recovered.rollback = Undone()
                self._put_back(
                    repo, journal.start, Path(journal.data["task_file"]), recovered.rollback
                )
                problem = "; ".join(recovered.rollback.problems)
            repo.drop()
            if problem:
                self.unsettled.append(f"{journal.owner}: {problem}")
                journal.release()
            else:
                journal.remove()
                self._recovered(recovered)

    def _keep(self, repo: RepoTracker, journal: AttemptJournal, recovered: Recovered) -> str:
        files = [str(f) for f in journal.data.get("files") or []]
        try:
            if files:
                repo.remember(str(journal.data["task"]), files)
                repo.stage(files)
        except Exception as exc:  # a git failure: the journal stays for the next turn
            return f"could not stage {', '.join(files)}: {exc}"
        recovered.staged = [self.tracker.label(repo, f) for f in files]
        return ""

    def _recovered(self, recovered: Recovered) -> None:
        self.recovered.append(recovered)
        self.tracker.warnings.append(recovered.describe())

    def take_recovered(self) -> list[Recovered]:
        taken, self.recovered = self.recovered, []
        return taken

    def take_unsettled(self) -> list[str]:
        """Attempts of dead runs that could not be put back: nothing may run over them."""
        taken, self.unsettled = list(dict.fromkeys(self.unsettled)), []
        return taken
