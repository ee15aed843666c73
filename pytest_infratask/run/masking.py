"""Mask secrets before any text leaves the process: one path for everything a person
or a file sees (streamed output, failure text, reports, progress lines, commits).

A ``Masker`` is one object per task run. ``mask(text)`` replaces every known secret
value, and any ``scheme://user:password@`` in the text, with ``***``; ``mask_line``
is the same for one line of streamed output; ``mask_data`` walks a report. Known
values come from:

- variables whose names look secret (``TOKEN``, ``SECRET``, ``PASSWORD``, ``KEY``...),
  or that the task's ``secrets:`` list or ini ``infratask_secret_vars`` name;
- user-info in any variable holding a URL (``DATABASE_URL``, ``REGISTRY_URL``...);
- tokens, passwords and client keys of the kubeconfig the commands use;
- registry credentials in the files container tools read (docker's config.json,
  containers' auth.json);
- values a component hands over (``add``), such as registry bearer tokens;

each also in its base64 and URL-encoded forms. Boolean-like and very short values
(``true``, ``no``, ``1``...) are never masked: that would garble every line and
protect nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from pytest_infratask.clients.kubeconfig import KubeconfigError, merged

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL", re.I)
MASK = "***"
MIN_LENGTH = 4
HARMLESS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "0", "1", "none", "null", "enabled", "disabled"}
)
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@?#]*):([^/\s@?#]+)@")
_PEM = re.compile(r"^-----(BEGIN|END) [A-Z ]+-----$")


def _harmless(value: str) -> bool:
    return len(value) < MIN_LENGTH or value.strip().lower() in HARMLESS


def _forms(value: str) -> set[str]:
    """The value and the encodings it travels in (base64 in auth headers and
    kubeconfigs, percent-encoding in URLs)."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    raw = value.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms |= {text, text.rstrip("=")}
    return {f for f in forms if not _harmless(f)}


def _userinfo(value: str) -> set[str]:
    """``user:password`` pairs of URLs in ``value``, raw and decoded."""
    found: set[str] = set()
    for match in USERINFO.finditer(value):
        user, password = match.group(2), match.group(3)
        for u, p in ((user, password), (unquote(user), unquote(password))):
            found.add(p)
            found.add(f"{u}:{p}")
    return found


def environment_secrets(env: Mapping[str, str], names: Iterable[str] = ()) -> set[str]:
    wanted = {n.upper() for n in names}
    values: set[str] = set()
    for name, value in env.items():
        if SECRET_NAME.search(name) or name.upper() in wanted:
            values.add(value)
        if "://" in value:
            values |= _userinfo(value)
    return values


def kubeconfig_secrets(env: Mapping[str, str]) -> set[str]:
    """Tokens, passwords and client keys of the users in the kubeconfig(s) ``env`` names."""

    try:
        config = merged(env)
    except (KubeconfigError, OSError, ValueError):
        return set()
    values: set[str] = set()
    for entry in config.get("users") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in ("token", "password", "client-key-data"):
            if isinstance(user.get(key), str):
                values.add(user[key])
        provider = user.get("auth-provider")
        settings = provider.get("config") if isinstance(provider, dict) else None
        if isinstance(settings, dict):
            values |= {
                v
                for k, v in settings.items()
                if isinstance(v, str)
                and (SECRET_NAME.search(k) or k in ("id-token", "refresh-token", "access-token"))
            }
        key_data = user.get("client-key-data")
        if isinstance(key_data, str):
            values |= _pem_lines(key_data)
    return values


def _pem_lines(data: str) -> set[str]:
    """The body lines of a base64-encoded PEM key: output shows a key line by line."""
    try:
        pem = base64.b64decode(data, validate=False).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return set()
    return {line.strip() for line in pem.splitlines() if line.strip() and not _PEM.match(line)}


def registry_auth_files(env: Mapping[str, str]) -> list[Path]:
    """Where docker, podman and buildah keep registry logins."""
    home = Path(env.get("HOME") or Path.home())
    files = [Path(env["REGISTRY_AUTH_FILE"])] if env.get("REGISTRY_AUTH_FILE") else []
    files.append(
        Path(env["DOCKER_CONFIG"]) / "config.json"
        if env.get("DOCKER_CONFIG")
        else home / ".docker" / "config.json"
    )
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(home / ".config" / "containers" / "auth.json")
    return files


def registry_secrets(env: Mapping[str, str]) -> set[str]:
    values: set[str] = set()
    for path in registry_auth_files(env):
        try:
            data = json.loads(path.expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        auths = data.get("auths") if isinstance(data, dict) else None
        for entry in (auths or {}).values() if isinstance(auths, dict) else ():
            if not isinstance(entry, dict):
                continue
            for key in ("auth", "password", "identitytoken", "registrytoken"):
                if isinstance(entry.get(key), str):
                    values.add(entry[key])
            if isinstance(entry.get("auth"), str):
                try:
                    pair = base64.b64decode(entry["auth"], validate=False).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    continue
                values |= {pair, pair.partition(":")[2]}
    return values


class Masker:
    """Replace every known secret, and URL passwords, with ``***``.

    The values themselves are kept out of ``repr`` so a traceback printing locals
    (``pytest -l``) shows no secret.
    """

    def __init__(self, *envs: Mapping[str, str]) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(v for env in envs for v in environment_secrets(env))

    @classmethod
    def for_run(cls, env: Mapping[str, str], names: Iterable[str] = ()) -> Masker:
        """Everything a task's commands can reach: its environment, the kubeconfig and
        registry logins that environment points at."""
        masker = cls()
        masker.add(environment_secrets(env, names))
        masker.add(kubeconfig_secrets(env))
        masker.add(registry_secrets(env))
        return masker

    def add(self, values: Iterable[str]) -> None:
        new = {f for v in values if isinstance(v, str) and not _harmless(v) for f in _forms(v)}
        if new - self._values:
            self._values |= new
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    @property
    def values(self) -> list[str]:
        """The literal values masked (for ``::add-mask::``), longest first."""
        return sorted(self._values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        if not text:
            return text
        if "://" in text:
            text = USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return text

    __call__ = mask

    def mask_line(self, line: str) -> str:
        """One line of streamed output (with or without its newline)."""
        return self.mask(line)

    def mask_data(self, data: Any) -> Any:
        """A copy of JSON-like data with every string masked."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {k: self.mask_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask_data(v) for v in data]
        return data

    def __repr__(self) -> str:
        return f"<Masker: {len(self._values)} values>"


class Environment(dict[str, str]):
    """A command's environment; its ``repr`` names variables, never values, so a
    traceback printing locals (``pytest -l``) cannot show a secret."""

    def __repr__(self) -> str:
        return f"<Environment: {len(self)} variables>"


def github_add_mask(masker: Masker, seen: set[str]) -> list[str]:
    """``::add-mask::`` lines for values not announced yet (GitHub Actions only)."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return []
    lines = []
    for value in masker.values:
        if value not in seen and "\n" not in value:
            seen.add(value)
            lines.append(f"::add-mask::{value}")
    return lines
