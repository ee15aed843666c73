"""Where credentials live on a machine: the one list the registry client reads logins
from, kubeconfigs are read from, and the masker learns secrets from.

Kept in one place so that every file a client reads for a credential is also a file
whose credentials are masked: two lists drift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# The variables that choose each kind of credential file.
CHOSEN_BY = {
    "registry": (
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "DOCKER_CONFIG",
        "HOME",
    ),
    "kubeconfig": ("KUBECONFIG", "HOME"),
}
# A task's ``env:`` cannot set these: commands would find other credential files than
# the ones the sandbox hides and the masker reads (checked at collection).
RESERVED_ENV = tuple(dict.fromkeys(name for names in CHOSEN_BY.values() for name in names))


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def registry_auth_files(
    env: Mapping[str, str], auth_file: Path | None = None, *, shadowed: bool = False
) -> list[Path]:
    """Registry login files in the order they are read: ``auth_file`` (the task's
    ``registry_auth_file`` or ini ``infratask_registry_auth_file``), then as podman and
    buildah read them (``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/
    auth.json``; then ``$XDG_CONFIG_HOME`` or ``~/.config``, ``containers/auth.json``),
    then the Docker CLI's ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.

    ``shadowed``: also the runtime file that ``REGISTRY_AUTH_FILE`` hides from lookup
    (a tool given its own ``--authfile`` still reads it)."""
    files: list[Path] = [Path(auth_file)] if auth_file is not None else []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR") and (shadowed or not env.get("REGISTRY_AUTH_FILE")):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
    files.append((config_home or _home(env) / ".config") / "containers" / "auth.json")
    if env.get("DOCKER_CONFIG"):
        files.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    else:
        files.append(_home(env) / ".docker" / "config.json")
    return [path.expanduser() for path in files]


def kubeconfig_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files kubectl reads: ``$KUBECONFIG`` (a path list), else
    ``~/.kube/config``."""
    env = os.environ if env is None else env
    value = env.get("KUBECONFIG")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return [_home(env) / ".kube" / "config"]


def credential_files(
    env: Mapping[str, str], auth_file: Path | None = None
) -> list[tuple[str, Path]]:
    """Every credential file ``env`` points at, as (kind, path): ``registry`` login
    files (shadowed ones included) and ``kubeconfig`` files."""
    return [
        *(("registry", p) for p in registry_auth_files(env, auth_file, shadowed=True)),
        *(("kubeconfig", p) for p in kubeconfig_paths(env)),
    ]
