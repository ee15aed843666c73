"""Every file the plugin writes is replaced whole (util/files.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pytest_infratask.clients.manifest import set_value
from pytest_infratask.util.files import TMP_SUFFIX, atomic_write


def test_the_new_content_replaces_the_old_whole(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text("old")
    atomic_write(path, "new ✓\n")
    assert path.read_bytes() == "new ✓\n".encode()
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_replace_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")  # a non-empty directory cannot be replaced
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert target.is_dir()
    assert not list(tmp_path.glob(f"*{TMP_SUFFIX}"))


def test_like_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text("old")
    path.chmod(0o751)
    atomic_write(path, "new", like=path.stat())
    assert stat.S_IMODE(path.stat().st_mode) == 0o751


MANIFEST = "# the app\nspec:\n  image: app:1.0  # pinned\n"


def test_a_manifest_edit_replaces_the_file_and_keeps_mode_and_symlink(tmp_path: Path) -> None:
    real = tmp_path / "base" / "deploy.yaml"
    real.parent.mkdir()
    real.write_text(MANIFEST)
    real.chmod(0o640)
    link = tmp_path / "deploy.yaml"
    link.symlink_to(real)
    before = real.stat().st_ino
    set_value(link, "spec.image", "app:1.1")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == MANIFEST.replace("app:1.0", "app:1.1")
    assert real.stat().st_ino != before  # a new file, renamed into place
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert not list(real.parent.glob(f"*{TMP_SUFFIX}"))
