"""The commands' PATH includes the running interpreter's script directory.

``.venv/bin/pytest tasks/`` runs the plugin from a virtual environment nobody
activated, so the ``infratask`` console script the task files call (and any other
tool installed beside the plugin) is not on the inherited PATH. The directory is
added at the end, not the front: the user's own tools (their ``kubectl``, a
wrapper script) keep their precedence over what the environment happens to hold.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Mapping


def scripts_dir() -> str:
    """Where this interpreter's console scripts (``infratask``, ``pytest``) live."""
    return sysconfig.get_path("scripts")


def with_scripts_dir(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` whose PATH ends with the script directory (unless it is there)."""
    out = dict(env)
    scripts = scripts_dir()
    entries = [entry for entry in out.get("PATH", os.defpath).split(os.pathsep) if entry]
    if os.path.normpath(scripts) not in {os.path.normpath(entry) for entry in entries}:
        out["PATH"] = os.pathsep.join([*entries, scripts])
    return out
