"""git's status and index, read and written in-process through libgit2 (pygit2).

A criterion in a repository needs the repository's status after its commands and
its changed files staged: as git processes that is two spawns (~1.5-3 ms each), in
process a fraction of a millisecond. Anything libgit2 may do differently from git
goes to the git command instead:

- an index libgit2 cannot read (split or sparse index, an extension it does not
  know) or a lock it cannot take raises, and the caller runs git;
- staging a path with a ``filter`` attribute (Git LFS, git-crypt) runs git, whose
  filter drivers libgit2 does not run; so do paths gone from the work tree;
- status never writes the index (git's ``GIT_OPTIONAL_LOCKS=0``), so another
  process's ``git add`` never finds the index locked because of it.

libgit2's import costs about as much as eight git processes (~50 ms: the library and
its TLS stack are loaded), so a process's first ``LOAD_AFTER`` status reads and
stagings go to the git command (``in_process``). A task whose criteria change no file
asks for a few (its opening status, one a second as its criteria go by, its ticks
staged at its end) and never loads it. One whose criteria change files loads it
at the first such criterion, whose rollback record saves blobs through it, and then
asks for several status reads and stagings per criterion.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Libgit2 = Any
"""A pygit2 object (repository, tree, index): its stubs reject what libgit2 does here
(``diff`` of two trees, ``data`` of a blob looked up by id)."""


LOAD_AFTER = 8
"""Status reads and stagings the git command answers before libgit2 is loaded."""
_ASKED = [0]


def in_process() -> bool:
    """Whether libgit2 answers the next status read or staging: it is loaded already,
    or enough were asked that its import pays."""
    if "pygit2" in sys.modules:
        return True
    _ASKED[0] += 1
    return _ASKED[0] > LOAD_AFTER


class NativeUnavailable(Exception):
    """libgit2 cannot do this one as git would: use the git command."""


class Native:
    """One repository, opened once per task through pygit2."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._repo: Libgit2 = None

    def _open(self) -> Libgit2:
        if self._repo is None:
            try:
                import pygit2  # ~50 ms to import; only tasks in a repository need it
            except ImportError as exc:
                raise NativeUnavailable(str(exc)) from None
            try:
                self._repo = pygit2.Repository(str(self.root))
            except (pygit2.GitError, KeyError, ValueError) as exc:
                raise NativeUnavailable(str(exc)) from None
        return self._repo

    def status_paths(self) -> list[str]:
        """Every path that differs from HEAD: staged, unstaged or untracked (each file
        of an untracked directory), ignored ones left out; as ``git status -uall``."""
        repo = self._open()
        try:
            return list(repo.status(untracked_files="all"))
        except Exception as exc:  # pygit2.GitError and what a broken index raises
            raise NativeUnavailable(str(exc)) from None

    def add(self, paths: Iterable[str]) -> None:
        """``git add`` of files present in the work tree, none of them filtered."""
        repo = self._open()
        paths = list(paths)
        for path in paths:
            if not os.path.lexists(self.root / path) or (self.root / path).is_dir():
                raise NativeUnavailable(f"{path} is not a file in the work tree")
        try:
            filtered = [p for p in paths if repo.get_attr(p, "filter") is not None]
        except Exception as exc:  # attributes read from an index libgit2 cannot read
            raise NativeUnavailable(str(exc)) from None
        if filtered:
            raise NativeUnavailable(f"{', '.join(filtered)}: a filter attribute")
        try:
            index = repo.index
            index.read(True)
            for path in paths:
                index.add(path)
            index.write()
        except Exception as exc:  # pygit2.GitError (locked, unreadable), OSError
            raise NativeUnavailable(str(exc)) from None

    # -- what an attempt's rollback needs: blobs, index entries, trees ----------------
    def head(self) -> str | None:
        """HEAD's commit id; None on an unborn branch."""
        repo = self._open()
        try:
            return None if repo.head_is_unborn else str(repo.head.target)
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None

    def write_blob(self, data: bytes) -> str:
        try:
            return str(self._open().create_blob(data))
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None

    def has_blob(self, oid: str) -> bool:
        try:
            return oid in self._open()
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None

    def read_blob(self, oid: str) -> bytes:
        try:
            return bytes(self._open()[oid].data)
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None

    def index_entries(self, paths: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Mode and blob id of each path the index holds (at stage 0)."""
        repo = self._open()
        found: dict[str, tuple[int, str]] = {}
        try:
            index = repo.index
            index.read(False)  # again only when the file changed on disk
            for path in paths:
                entry = _entry(index, path)
                if entry is not None:
                    found[path] = (entry.mode, str(entry.id))
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None
        return found

    def tree_entries(self, commit: str | None, paths: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Mode and blob id of each path in ``commit``'s tree (none for no commit)."""
        found: dict[str, tuple[int, str]] = {}
        if commit is None:
            return found
        try:
            tree = self._tree(commit)
            for path in paths:
                try:
                    obj = tree[path]
                except KeyError:
                    continue
                if obj.type_str == "blob" or obj.filemode == 0o160000:
                    found[path] = (obj.filemode, str(obj.id))
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None
        return found

    def _tree(self, commit: str) -> Libgit2:
        import pygit2

        return self._open()[commit].peel(pygit2.Tree)

    def set_index(self, entries: dict[str, tuple[int, str] | None]) -> None:
        """Put index entries back (None: out of the index); libgit2 takes the index lock."""
        import pygit2

        repo = self._open()
        try:
            index = repo.index
            index.read(True)
            for path, entry in entries.items():
                if entry is None:
                    if _entry(index, path) is not None:
                        index.remove(path)
                else:
                    index.add(
                        pygit2.IndexEntry(
                            path, pygit2.Oid(hex=entry[1]), pygit2.enums.FileMode(entry[0])
                        )
                    )
            index.write()
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None

    def changed_between(self, old: str, new: str) -> list[str]:
        """Paths whose content differs between two commits' trees."""
        try:
            diff = self._open().diff(self._tree(old), self._tree(new))
            return sorted({p for d in diff.deltas for p in (d.old_file.path, d.new_file.path)})
        except Exception as exc:
            raise NativeUnavailable(str(exc)) from None


def _entry(index: Libgit2, path: str) -> Libgit2:
    try:
        return index[path]
    except (KeyError, ValueError):
        return None
