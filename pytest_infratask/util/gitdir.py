"""Where a path's git repository is and which branch it is on, read without spawning git."""

from __future__ import annotations

from pathlib import Path


def git_head(path: Path) -> tuple[Path, str | None] | None:
    """Repository root and branch (None when detached), read without spawning git."""
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        if dot_git.is_dir():
            git_dir = dot_git
        elif dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                continue
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        try:
            head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return folder, None
        return folder, head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else None
    return None
