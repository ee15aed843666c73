"""What a run knows to be secret: values of its environment, and the credentials in the
files that environment (and the user's own) points at.

The files are those of ``core.credentials``, the list the clients read: a location a
client reads a credential from is a location whose credentials are masked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote

import yaml

from pytest_infratask.core.credentials import credential_files

# Names that say their value is secret: anywhere in the name for the unambiguous words,
# as the last word of the name for the short ones (``DB_PASS``, ``GH_PAT``, ``BASIC_AUTH``;
# not ``BYPASS_CACHE``, ``AUTH_METHOD`` or ``PATH``).
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|(?:^|_)(?:PASS|PAT|AUTH|PWD|CREDS)$", re.I
)
NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})  # the shell's working directories
USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@?#]*):([^/\s@?#]+)@")
# Credentials whose shape names them, whatever variable or file holds them.
# Each starts with a literal, so a search skips ahead fast; a match right after a word
# character is part of a longer word, not a token (see ``shapes``).
TOKEN_SHAPES = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{30,255}"
    r"|github_pat_[A-Za-z0-9_]{30,255}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"
)
PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_MARKER = re.compile(r"-----(BEGIN|END) [A-Z0-9 ]+-----")
_READ_LIMIT = 4 * 1024 * 1024  # a credential file is small; a huge one is not read whole
# ``"auth": "..."`` and the like in a registry login file, read without parsing it.
_LOGIN_FIELD = re.compile(r'"(auth|password|identitytoken|registrytoken)"\s*:\s*"([^"\\]*)"')
_KUBE_USER_KEYS = ("token", "password", "client-key-data")
_PROVIDER_KEYS = ("id-token", "refresh-token", "access-token")


def secret_name(name: str, wanted: Iterable[str] = ()) -> bool:
    upper = name.upper()
    if upper in NOT_SECRET_NAMES:
        return False
    return bool(SECRET_NAME.search(name)) or upper in {n.upper() for n in wanted}


def _userinfo(value: str) -> Iterator[tuple[str, str]]:
    """(user, password) of the URLs in ``value``, raw and decoded."""
    for match in USERINFO.finditer(value):
        user, password = match.group(2), match.group(3)
        yield user, password
        yield unquote(user), unquote(password)


def url_pairs(env: Mapping[str, str]) -> set[str]:
    """``user:password`` of the URLs in ``env``'s values: secret encoded (a Basic auth
    header), while in a URL the user name stays readable."""
    return {f"{u}:{p}" for value in env.values() if "://" in value for u, p in _userinfo(value)}


def shapes(text: str) -> Iterator[re.Match[str]]:
    """The token-shaped words of ``text``."""
    for match in TOKEN_SHAPES.finditer(text):
        start = match.start()
        if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
            yield match


def shaped(value: str) -> set[str]:
    """Tokens recognisable by their shape, and the lines of private keys, in ``value``."""
    found = {m.group() for m in shapes(value)}
    if PEM_BEGIN.search(value):
        found |= pem_lines(value)
    return found


def environment_secrets(env: Mapping[str, str], names: Iterable[str] = ()) -> set[str]:
    """Values of secret-looking names, URL passwords, and token-shaped values under any
    name (``GH_PAT=ghp_…`` as well as ``NOTES=ghp_…``)."""
    wanted = tuple(names)
    values: set[str] = set()
    for name, value in env.items():
        if secret_name(name, wanted):
            values.add(value)
        if "://" in value:
            values |= {password for _user, password in _userinfo(value)}
        values |= shaped(value)
    return values


def pem_lines(pem: str) -> set[str]:
    """The body lines of a PEM text: output shows a key line by line."""
    lines = (line.strip() for line in pem.replace("\\n", "\n").splitlines())
    return {line for line in lines if line and not _PEM_MARKER.search(line)}


def _decoded_pem(data: str) -> set[str]:
    try:
        pem = base64.b64decode(data, validate=False).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return set()
    return pem_lines(pem) if _PEM_MARKER.search(pem) else set()


def _read(path: Path) -> str | None:
    """A credential file's text; not a FIFO or device, whose reading could block."""
    try:
        if not path.is_file():
            return None
        with path.open(encoding="utf-8", errors="replace") as handle:
            return handle.read(_READ_LIMIT)
    except (OSError, ValueError):
        return None


# ``key: value`` of a user's secret fields, in block or flow style, quoted or not.
_KUBE_SECRET_FIELD = re.compile(
    r"""(?:^|[\s{,])["']?(token|password|client-key-data|id-token|refresh-token|access-token"""
    r"""|client-secret)["']?[ \t]*:[ \t]*(?:"([^"\r\n]*)"|'([^'\r\n]*)'"""
    r"""|((?:[^\s,{}\[\]#"':]|:(?!\s|$))+))""",
    re.M,
)


def _kube_field_values(text: str) -> set[str]:
    """The values of a kubeconfig's secret fields, read line by line without parsing:
    a file that is not valid YAML still holds its tokens, and commands may print them."""
    return {
        next(v for v in m.groups()[1:] if v is not None) for m in _KUBE_SECRET_FIELD.finditer(text)
    }


def kubeconfig_secrets(text: str) -> set[str]:
    """Tokens, passwords and client keys of a kubeconfig's users; read line by line too,
    so a file that does not parse still has its secrets masked."""
    values = _kube_field_values(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    users = data.get("users") if isinstance(data, dict) else None
    for entry in users if isinstance(users, list) else ():
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        values |= {user[k] for k in _KUBE_USER_KEYS if isinstance(user.get(k), str)}
        provider = user.get("auth-provider")
        settings = provider.get("config") if isinstance(provider, dict) else None
        if isinstance(settings, dict):
            values |= {
                v
                for k, v in settings.items()
                if isinstance(v, str) and (secret_name(k) or k in _PROVIDER_KEYS)
            }
    for value in list(values):
        values |= _decoded_pem(value)
    return values


def registry_secrets(text: str) -> set[str]:
    """Passwords and tokens of a registry login file (docker's config.json, containers'
    auth.json), with the ``user:password`` pair each ``auth`` field encodes."""
    values: set[str] = set()
    for entry in _login_entries(text):
        values |= {v for k in ("auth", *_LOGIN_KEYS) if isinstance(v := entry.get(k), str)}
    values |= {value for _key, value in _LOGIN_FIELD.findall(text)}
    for value in list(values):
        try:
            pair = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if ":" in pair:
            values |= {pair, pair.partition(":")[2]}
    return values


_LOGIN_KEYS = ("password", "identitytoken", "registrytoken")


def _login_entries(text: str) -> Iterator[dict[str, object]]:
    try:
        data = json.loads(text)
    except ValueError:
        return
    auths = data.get("auths") if isinstance(data, dict) else None
    for entry in auths.values() if isinstance(auths, dict) else ():
        if isinstance(entry, dict):
            yield entry


def file_secrets(envs: Iterable[Mapping[str, str]], auth_file: Path | None = None) -> set[str]:
    """The credentials in every file of the credential list, for each environment."""
    values: set[str] = set()
    seen: set[tuple[str, Path]] = set()
    for env in envs:
        for kind, path in credential_files(env, auth_file):
            if (kind, path) in seen:
                continue
            seen.add((kind, path))
            text = _read(path)
            if text is not None:
                read = kubeconfig_secrets if kind == "kubeconfig" else registry_secrets
                values |= read(text)
    return values
