"""Read the active kube context and pin one for a run.

Commands get a private kubeconfig whose current-context is the pinned one, so
``kubectl config use-context`` in another terminal mid-run cannot redirect them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def kubeconfig_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    value = env.get("KUBECONFIG")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return [Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"]


class KubeconfigError(Exception):
    """A kubeconfig that exists but cannot be read."""


def _load(path: Path) -> dict[str, Any]:
    """A missing file is empty, as for kubectl; a broken one is an error, not "no context"."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: invalid YAML ({exc})") from None
    return data if isinstance(data, dict) else {}


def merged(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge like kubectl: the first file to name an entry or current-context wins."""
    result: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    for path in kubeconfig_paths(env):
        data = _load(path)
        if data.get("current-context") and "current-context" not in result:
            result["current-context"] = data["current-context"]
        for section in ("clusters", "contexts", "users"):
            entries = result.setdefault(section, [])
            names = {e.get("name") for e in entries}
            for entry in data.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") not in names:
                    entries.append(entry)
    return result


def active_context(env: Mapping[str, str] | None = None) -> str | None:
    value = merged(env).get("current-context")
    return str(value) if value else None


def contexts(env: Mapping[str, str] | None = None) -> list[str]:
    return [str(c.get("name")) for c in merged(env).get("contexts", [])]


def pin(context: str, env: Mapping[str, str] | None = None) -> Path:
    """Write a private kubeconfig with ``context`` current; the caller deletes it."""
    import yaml

    config = merged(env)
    config["current-context"] = context
    fd, name = tempfile.mkstemp(prefix="infratask-kubeconfig-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return Path(name)
