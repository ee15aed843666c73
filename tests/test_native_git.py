"""Status and staging in-process (libgit2) give what git gives, and hand git anything
libgit2 would do differently."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import git

from pytest_infratask.record.attempt import GitCommand
from pytest_infratask.record.git import GitError, RepoTracker
from pytest_infratask.record.native import LOAD_AFTER, Native, NativeUnavailable


@pytest.fixture
def repo(tmp_path: Path, git_identity: None) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("*.log\n")
    (root / "apps").mkdir()
    for name in ("a.yaml", "b.yaml", "c.yaml", "old.yaml"):
        (root / "apps" / name).write_text(f"{name}\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root


def _git_status(root: Path) -> set[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {entry[3:] for entry in out.split("\0") if len(entry) > 3}


def test_status_is_gits(repo: Path) -> None:
    (repo / "apps" / "a.yaml").write_text("changed\n")  # modified
    (repo / "apps" / "b.yaml").unlink()  # deleted
    (repo / "apps" / "c.yaml").write_text("staged\n")
    git(repo, "add", "apps/c.yaml")  # staged
    git(repo, "mv", "apps/old.yaml", "apps/new.yaml")  # renamed
    (repo / "new" / "deep").mkdir(parents=True)
    (repo / "new" / "deep" / "x.yaml").write_text("x\n")  # untracked, in a new dir
    (repo / "debug.log").write_text("ignored\n")  # ignored
    native = set(Native(repo).status_paths())
    assert native == _git_status(repo)
    assert native == {
        "apps/a.yaml",
        "apps/b.yaml",
        "apps/c.yaml",
        "apps/old.yaml",
        "apps/new.yaml",
        "new/deep/x.yaml",
    }


def test_status_never_writes_the_index(repo: Path) -> None:
    index = repo / ".git" / "index"
    before = index.stat().st_mtime_ns
    (repo / "apps" / "a.yaml").write_text("changed\n")
    Native(repo).status_paths()
    assert index.stat().st_mtime_ns == before


def test_staging_writes_what_git_add_would(repo: Path) -> None:
    (repo / "apps" / "a.yaml").write_text("changed\n")
    (repo / "apps" / "d.yaml").write_text("new\n")
    Native(repo).add(["apps/a.yaml", "apps/d.yaml"])
    staged = git(repo, "diff", "--cached", "--name-status").split()
    assert staged == ["M", "apps/a.yaml", "A", "apps/d.yaml"]
    assert git(repo, "fsck", "--no-progress") == ""


def test_a_filtered_path_is_staged_by_git(repo: Path) -> None:
    """libgit2 does not run filter drivers (Git LFS, git-crypt): git stages those."""
    git(repo, "config", "filter.upper.clean", "tr a-z A-Z")
    git(repo, "config", "filter.upper.smudge", "cat")
    (repo / ".gitattributes").write_text("*.secret filter=upper\n")
    (repo / "apps" / "token.secret").write_text("plain\n")
    with pytest.raises(NativeUnavailable, match="filter"):
        Native(repo).add(["apps/token.secret"])
    tracker = RepoTracker(repo, "repo", "main")
    tracker.stage(["apps/token.secret"])
    assert git(repo, "show", ":apps/token.secret") == "PLAIN\n"


def test_an_index_libgit2_cannot_read_goes_to_git(repo: Path) -> None:
    git(repo, "config", "core.splitIndex", "true")
    git(repo, "update-index", "--split-index")
    (repo / "apps" / "a.yaml").write_text("changed\n")
    tracker = RepoTracker(repo, "repo", "main")
    try:
        native = Native(repo).status_paths()
    except NativeUnavailable:
        native = None  # the case this test is about: git answers instead
    assert set(tracker.snapshot()) == {"apps/a.yaml"}
    assert native in (None, ["apps/a.yaml"])
    tracker.stage(["apps/a.yaml"])
    assert git(repo, "diff", "--cached", "--name-only").split() == ["apps/a.yaml"]


def test_a_locked_index_is_not_overwritten(repo: Path) -> None:
    """Another git holding index.lock: libgit2 refuses, and so does git after it,
    with git's own message; the lock and the index are left alone."""
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    (repo / "apps" / "a.yaml").write_text("changed\n")
    with pytest.raises(NativeUnavailable):
        Native(repo).add(["apps/a.yaml"])
    tracker = RepoTracker(repo, "repo", "main")
    with pytest.raises(Exception, match=r"index\.lock"):
        tracker.stage(["apps/a.yaml"])
    assert lock.exists()
    lock.unlink()
    assert git(repo, "diff", "--cached", "--name-only") == ""


def test_the_git_command_gives_the_same_status_and_staging(repo: Path) -> None:
    """What answers before libgit2 is loaded lists and stages as libgit2 and git do."""
    (repo / "apps" / "a.yaml").write_text("changed\n")
    (repo / "apps" / "b.yaml").unlink()
    git(repo, "mv", "apps/old.yaml", "apps/new.yaml")
    (repo / "new" / "deep").mkdir(parents=True)
    (repo / "new" / "deep" / "x yaml*").write_text("x\n")  # a pathspec character, literal
    (repo / "debug.log").write_text("ignored\n")
    command = GitCommand(repo)
    assert sorted(command.status_paths()) == sorted(Native(repo).status_paths())
    assert set(command.status_paths()) == _git_status(repo)
    command.add(["apps/a.yaml", "apps/b.yaml", "new/deep/x yaml*"])
    staged = git(repo, "diff", "--cached", "--name-status", "--no-renames").splitlines()
    assert staged == [
        "M\tapps/a.yaml",
        "D\tapps/b.yaml",
        "A\tapps/new.yaml",
        "D\tapps/old.yaml",
        "A\tnew/deep/x yaml*",
    ]


LOADS = """
import sys
from pathlib import Path
from pytest_infratask.record.git import GitError, RepoTracker
from pytest_infratask.record.native import LOAD_AFTER

root = Path(sys.argv[1])
tracker = RepoTracker(root, "repo", "main")
seen = []
for n in range(LOAD_AFTER + 1):  # a status read, then a staging, in turn
    (root / "apps" / f"n{n}.yaml").write_text("new\\n")
    if n % 2:
        staged = [f"apps/n{m}.yaml" for m in range(n + 1)]
        tracker.stage(staged)
        seen.append((staged, "pygit2" in sys.modules))
    else:
        seen.append((sorted(tracker.snapshot()), "pygit2" in sys.modules))
print(seen)
"""


def test_libgit2_is_loaded_only_once_enough_was_asked_for_it_to_pay(repo: Path) -> None:
    """A fresh process reads the status and stages through git for its first
    ``LOAD_AFTER`` calls, alike, then loads libgit2."""
    out = subprocess.run(
        [sys.executable, "-c", LOADS, str(repo)], capture_output=True, text=True, check=True
    ).stdout
    seen = ast.literal_eval(out)
    assert [loaded for _, loaded in seen] == [False] * LOAD_AFTER + [True]
    # each status read lists every file written so far; the last staging is the index
    assert [paths for n, (paths, _) in enumerate(seen) if not n % 2] == [
        [f"apps/n{m}.yaml" for m in range(n + 1)] for n in range(0, LOAD_AFTER + 1, 2)
    ]
    last_staged = [paths for n, (paths, _) in enumerate(seen) if n % 2][-1]
    assert git(repo, "diff", "--cached", "--name-only").split() == last_staged


def test_a_commit_whose_head_git_cannot_read_is_not_made(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A git killed while asked about HEAD (the run's own interrupt reaches its process
    group) says nothing about an unborn branch: the commit fails, and is never built on
    the empty tree, which would drop every other file of the repository."""
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "git").write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = rev-parse ] && kill -INT $$; done\n'
        f'exec {real.stdout.strip()} "$@"\n'
    )
    (shim / "git").chmod(0o755)
    (repo / "apps" / "a.yaml").write_text("changed\n")
    tracker = RepoTracker(repo, "repo", "main")
    head = git(repo, "rev-parse", "HEAD")
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    with pytest.raises(GitError):
        tracker.commit(["apps/a.yaml"], "change a")
    monkeypatch.undo()
    assert git(repo, "rev-parse", "HEAD") == head
    assert ".gitignore" in git(repo, "ls-tree", "-r", "--name-only", "HEAD").split()
