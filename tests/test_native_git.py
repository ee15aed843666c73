"""Status and staging in-process (libgit2) give what git gives, and hand git anything
libgit2 would do differently."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import git

from pytest_infratask.record.git import RepoTracker
from pytest_infratask.record.native import Native, NativeUnavailable


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
