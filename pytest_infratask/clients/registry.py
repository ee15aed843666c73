"""OCI distribution API client used to confirm that pushed images really exist.

Standard library only, so importing the plugin stays fast. Authentication follows what
`docker`/`buildah` users already have configured: anonymous, Basic, or the Bearer token
challenge flow, with credentials from where container tools keep them: the environment,
containers-auth.json files (buildah/podman login), ~/.docker/config.json and the Docker
credential helpers it names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from pytest_infratask.core.credentials import registry_auth_files

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Credentials",
    "ImageCheck",
    "RegistryClient",
    "RegistryError",
    "find_credentials",
]

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_ACCEPT_MANIFESTS = ", ".join(MANIFEST_MEDIA_TYPES)
_MAX_BODY = 16 * 1024 * 1024
_MAX_TAG_PAGES = 100
_TAGS_SHOWN = 10
_CREDENTIAL_HINT = (
    "check credentials in ~/.docker/config.json or REGISTRY_AUTH_FILE "
    "(or log in again: buildah login / docker login)"
)
_NO_CREDENTIALS_HINT = (
    "no credentials found; log in (buildah login, podman login or docker login), or set "
    "REGISTRY_USERNAME/REGISTRY_PASSWORD or REGISTRY_AUTH_FILE"
)
_NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
_CHALLENGE_PARAM_RE = re.compile(
    r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))'
)
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class RegistryError(Exception):
    """A registry could not answer; the message is one line and never carries credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Credentials:
    """A username/password pair and where it was found; repr never shows the secret."""

    username: str
    password: str
    source: str

    def __repr__(self) -> str:
        return f"Credentials(username='***', password='***', source={self.source!r})"

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class ImageCheck:
    """Outcome of checking one image; `error` explains a missing or uncheckable image."""

    name: str
    tag: str
    exists: bool
    digest: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    netloc: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Message
    body: bytes = field(repr=False)

    def header(self, name: str) -> str:
        return str(self.headers.get(name, "") or "")


@dataclass(frozen=True)
class _Challenge:
    scheme: str
    params: dict[str, str]


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_registry(registry: str) -> tuple[str | None, str, str]:
    """Return (scheme or None, lowercase host, lowercase netloc) for a registry string."""
    text = registry.strip()
    scheme: str | None = None
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if match:
        scheme = match.group(1).lower()
        text = text[match.end() :]
        if scheme not in ("http", "https"):
            raise RegistryError(f"unsupported scheme {scheme!r} for registry {registry}")
    text = text.rstrip("/")
    if not text or "/" in text or "@" in text:
        raise RegistryError(f"invalid registry address {registry!r}: expected host[:port]")
    try:
        parts = urllib.parse.urlsplit("//" + text)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise RegistryError(f"invalid registry address {registry!r}: {exc}") from None
    if not host:
        raise RegistryError(f"invalid registry address {registry!r}: expected host[:port]")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return scheme, host, netloc


def _plain_http_allowed(host: str, netloc: str, insecure: Collection[str]) -> bool:
    if _is_loopback(host):
        return True
    allowed: set[str] = set()
    for entry in insecure:
        try:
            allowed.add(_split_registry(entry)[2])
        except RegistryError:
            continue
    # An entry without a port covers every port of that host.
    return netloc in allowed or host in allowed


def _resolve_endpoint(registry: str, insecure: Collection[str]) -> _Endpoint:
    scheme, host, netloc = _split_registry(registry)
    http_ok = _plain_http_allowed(host, netloc, insecure)
    if scheme == "http" and not http_ok:
        raise RegistryError(
            f"plain HTTP is not allowed for registry {netloc}: use https or list it as insecure"
        )
    if scheme is None:
        scheme = "http" if http_ok else "https"
    return _Endpoint(scheme=scheme, host=host, netloc=netloc)


# --- credentials -------------------------------------------------------------------------


def _auth_keys(key: str) -> tuple[str, str] | None:
    """Normalise a config `auths` key (host, host:port, https://host/v1/) to (netloc, host)."""
    text = key.strip()
    text = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0]
    try:
        _, host, netloc = _split_registry(text)
    except RegistryError:
        return None
    return netloc, host


def _entry_credentials(entry: object, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    username = entry.get("username")
    password = entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password, source)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryError(f"malformed 'auth' entry in {source}") from None
        user, sep, secret = decoded.partition(":")
        if not sep or not user:
            raise RegistryError(f"malformed 'auth' entry in {source}")
        return Credentials(user, secret, source)
    return None


def _load_auth_file(path: Path) -> dict[str, object] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RegistryError(f"cannot read credentials file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise RegistryError(f"cannot read credentials file {path}: invalid JSON") from None
    return data if isinstance(data, dict) else None


def _lookup(table: object, host: str, netloc: str) -> object | None:
    """The entry of a config table (``auths``, ``credHelpers``) for this registry."""
    if not isinstance(table, dict):
        return None
    by_netloc: dict[str, object] = {}
    by_host: dict[str, object] = {}
    for key, entry in table.items():
        keys = _auth_keys(str(key))
        if keys is None:
            continue
        entry_netloc, entry_host = keys
        by_netloc.setdefault(entry_netloc, entry)
        if entry_netloc == entry_host:
            by_host.setdefault(entry_host, entry)
    candidates = [netloc, host]
    if host in _DOCKER_HUB_ALIASES:
        candidates += sorted(_DOCKER_HUB_ALIASES)
    for candidate in candidates:
        for found in (by_netloc, by_host):
            if candidate in found:
                return found[candidate]
    return None


def _credentials_from_file(
    path: Path, host: str, netloc: str, env: Mapping[str, str]
) -> Credentials | None:
    """One auth.json/config.json, as the Docker CLI reads it: a ``credHelpers`` entry for
    the registry, else ``credsStore``, else the ``auths`` entry."""
    data = _load_auth_file(path)
    if data is None:
        return None
    helper = _lookup(data.get("credHelpers"), host, netloc)
    store = data.get("credsStore")
    for name, field_name in ((helper, "credHelpers"), (store, "credsStore")):
        if isinstance(name, str) and name:
            found = _from_helper(name, host, netloc, env, f"{field_name} in {path}")
            if found is not None:
                return found
    return _entry_credentials(_lookup(data.get("auths"), host, netloc), str(path))


_HELPER_TIMEOUT = 60.0


def _from_helper(
    name: str, host: str, netloc: str, env: Mapping[str, str], where: str
) -> Credentials | None:
    """Ask ``docker-credential-<name> get``, as the Docker CLI does: the server on stdin,
    ``{"Username", "Secret"}`` on stdout, a non-zero exit when it has nothing."""

    program = f"docker-credential-{name}"
    executable = shutil.which(program, path=env.get("PATH", os.defpath))
    if executable is None:
        raise RegistryError(
            f"credential helper {program} ({where}) is not installed or not on PATH"
        )
    server = "https://index.docker.io/v1/" if host in _DOCKER_HUB_ALIASES else netloc
    try:
        done = subprocess.run(
            [executable, "get"],
            input=server,
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RegistryError(
            f"credential helper {program} did not answer within {_HELPER_TIMEOUT:g}s"
        ) from None
    except OSError as exc:
        raise RegistryError(f"credential helper {program} could not run: {exc.strerror}") from None
    if done.returncode != 0:
        said = (done.stdout.strip() or done.stderr.strip()).lower()
        if "not found" in said or not said:
            return None  # "credentials not found in native keychain"
        # The helper's words may hold anything; report only its exit status.
        raise RegistryError(
            f"credential helper {program} failed with exit code {done.returncode} for {server}"
        )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RegistryError(f"credential helper {program} returned invalid JSON") from None
    username = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    if username == "<token>":
        raise RegistryError(
            f"credential helper {program} holds an identity token for {server}; "
            "log in with a username and password (or a token as the password) instead"
        )
    return Credentials(username, secret, program)


def find_credentials(
    registry: str,
    *,
    env: Mapping[str, str] | None = None,
    auth_file: Path | None = None,
) -> Credentials | None:
    """Look credentials up the way container tools do; the first source with an entry wins.

    Order: ``auth_file`` (the task's ``registry_auth_file`` or ini
    ``infratask_registry_auth_file``), REGISTRY_USERNAME/REGISTRY_PASSWORD, then the other
    files of ``credentials.registry_auth_files`` (the list the masker reads too). In each
    file a ``credHelpers`` entry or ``credsStore`` is asked first
    (``docker-credential-<name> get``), then ``auths``.
    """
    environ = os.environ if env is None else env
    _, host, netloc = _split_registry(registry)
    files = registry_auth_files(environ, auth_file)
    if auth_file is not None:
        found = _credentials_from_file(files.pop(0), host, netloc, environ)
        if found is not None:
            return found
    username = environ.get("REGISTRY_USERNAME", "")
    password = environ.get("REGISTRY_PASSWORD")
    if username and password is not None:
        return Credentials(username, password, "REGISTRY_USERNAME/REGISTRY_PASSWORD")
    for path in files:
        found = _credentials_from_file(path, host, netloc, environ)
        if found is not None:
            return found
    return None


# --- HTTP --------------------------------------------------------------------------------


def _parse_challenge(header: str) -> _Challenge | None:
    text = header.strip()
    if not text:
        return None
    scheme, _, rest = text.partition(" ")
    params = {
        key.lower(): (quoted if quoted else bare).replace('\\"', '"')
        for key, quoted, bare in _CHALLENGE_PARAM_RE.findall(rest)
    }
    return _Challenge(scheme=scheme.lower(), params=params)


def _describe_network_error(exc: BaseException) -> str:
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({reason.verify_message or reason.reason})"
    if isinstance(reason, ssl.SSLError):
        detail = reason.reason or str(reason)
        hint = ""
        if "WRONG_VERSION_NUMBER" in str(detail) or "record layer" in str(detail).lower():
            hint = "; the server may speak plain HTTP (list it as insecure)"
        return f"TLS error ({detail}){hint}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name could not be resolved"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


class _Transport:
    """HTTP to one registry and its token service: straight to a loopback host, through
    the environment's proxy otherwise; a network failure is a ``RegistryError``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._proxied = urllib.request.build_opener()

    def fetch(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        auth: str | None,
        *,
        what: str,
    ) -> _Response:
        request = urllib.request.Request(url, method=method, headers=dict(headers))
        request.add_header("User-Agent", "pytest-infratask")
        if auth is not None:
            # Unredirected: a redirect to blob storage must not carry our credentials along.
            request.add_unredirected_header("Authorization", auth)
        host = urllib.parse.urlsplit(url).hostname or ""
        opener = self._direct if _is_loopback(host) else self._proxied
        try:
            with opener.open(request, timeout=self.timeout) as raw:
                body = b"" if method == "HEAD" else raw.read(_MAX_BODY)
                return _Response(status=raw.status, headers=raw.headers, body=body)
        except urllib.error.HTTPError as exc:
            try:
                body = b"" if method == "HEAD" else exc.read(_MAX_BODY)
            except (http.client.HTTPException, OSError):
                body = b""
            finally:
                exc.close()
            return _Response(status=exc.code, headers=exc.headers, body=body)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            detail = _describe_network_error(exc)
            if detail == "timed out":
                detail = f"timed out after {self.timeout:g}s"
            raise RegistryError(f"{what} is unreachable: {detail}") from None


class _Auth:
    """What one registry's challenges are answered with: credentials looked up on the
    first challenge, a Basic header, or a Bearer token per scope from its token service."""

    def __init__(
        self,
        registry: str,
        insecure: tuple[str, ...],
        auth_file: Path | None,
        env: Mapping[str, str],
        transport: _Transport,
    ) -> None:
        self.registry = registry
        self._insecure = insecure
        self._auth_file = auth_file
        self._env = env
        self._transport = transport
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._basic_auth: str | None = None
        self._tokens: dict[str, str] = {}

    def header(self, scope: str | None) -> str | None:
        """The header earned so far for ``scope``, if any."""
        return self._tokens.get(scope or "") or self._basic_auth

    def forget(self, scope: str | None) -> None:
        """The header for ``scope`` was refused: ask for a new one next time."""
        self._basic_auth = None
        self._tokens.pop(scope or "", None)

    def answer(self, challenge: _Challenge | None, scope: str | None) -> str:
        credentials = self._load_credentials()
        if challenge is not None and challenge.scheme == "bearer":
            token = self._fetch_token(challenge, scope, credentials)
            header = f"Bearer {token}"
            self._tokens[scope or ""] = header
            return header
        if challenge is not None and challenge.scheme != "basic":
            raise RegistryError(
                f"registry {self.registry} asks for unsupported authentication {challenge.scheme!r}"
            )
        if credentials is None:
            raise RegistryError(
                f"authentication required for registry {self.registry}: {_NO_CREDENTIALS_HINT}"
            )
        self._basic_auth = credentials.basic_header()
        return self._basic_auth

    def secret_values(self) -> tuple[str, ...]:
        """Secrets this client has used, for output masking: file-sourced ones aren't in env."""
        values: list[str] = []
        if self._credentials is not None:
            header = self._credentials.basic_header()
            values += [self._credentials.password, header.split(" ", 1)[1]]
        values += [header.split(" ", 1)[1] for header in self._tokens.values()]
        return tuple(value for value in values if value)

    def _fetch_token(
        self, challenge: _Challenge, scope: str | None, credentials: Credentials | None
    ) -> str:
        realm = challenge.params.get("realm", "")
        split = urllib.parse.urlsplit(realm)
        if split.scheme not in ("http", "https") or not split.netloc:
            raise RegistryError(f"registry {self.registry} sent an invalid token realm")
        _, realm_host, realm_netloc = _split_registry(f"{split.scheme}://{split.netloc}")
        if split.scheme == "http" and not _plain_http_allowed(
            realm_host, realm_netloc, self._insecure
        ):
            raise RegistryError(
                f"registry {self.registry} sent a plain HTTP token realm on {realm_netloc}; "
                "list it as insecure to allow that"
            )
        query = urllib.parse.parse_qsl(split.query)
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        wanted = challenge.params.get("scope") or scope
        if wanted:
            query.append(("scope", wanted))
        url = urllib.parse.urlunsplit(
            (split.scheme, split.netloc, split.path or "/", urllib.parse.urlencode(query), "")
        )
        auth = credentials.basic_header() if credentials is not None else None
        what = f"token service {realm_netloc} of registry {self.registry}"
        response = self._transport.fetch(
            "GET", url, {"Accept": "application/json"}, auth, what=what
        )
        if response.status in (401, 403):
            if credentials is None:
                raise RegistryError(
                    f"authentication required for registry {self.registry}: {_NO_CREDENTIALS_HINT}"
                )
            raise self.failed()
        if not 200 <= response.status < 300:
            raise RegistryError(f"{what} answered HTTP {response.status}")
        try:
            payload = json.loads(response.body)
        except ValueError:
            payload = None
        token = None
        if isinstance(payload, dict):
            token = payload.get("token") or payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{what} returned no token")
        return token

    def failed(self) -> RegistryError:
        source = self._credentials.source if self._credentials is not None else None
        origin = f" (credentials from {source})" if source else ""
        return RegistryError(
            f"authentication failed for registry {self.registry}{origin}: {_CREDENTIAL_HINT}"
        )

    def _load_credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            self._credentials = find_credentials(
                self.registry, env=self._env, auth_file=self._auth_file
            )
            self._credentials_loaded = True
        return self._credentials


class RegistryClient:
    """Talks to one registry; credentials are looked up lazily, on the first auth challenge."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: Collection[str] = (),
        auth_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 10,
    ) -> None:
        self._endpoint = _resolve_endpoint(registry, tuple(insecure))
        self._transport = _Transport(timeout)
        environment: Mapping[str, str] = dict(os.environ if env is None else env)
        self._auth = _Auth(self.registry, tuple(insecure), auth_file, environment, self._transport)

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, base_url={self.base_url!r})"

    @property
    def registry(self) -> str:
        """Registry as shown in messages: host[:port] without scheme."""
        return self._endpoint.netloc

    @property
    def base_url(self) -> str:
        return self._endpoint.base_url

    @property
    def timeout(self) -> float:
        return self._transport.timeout

    # -- public API ------------------------------------------------------------------------

    def ping(self) -> None:
        """Fail with RegistryError unless the registry answers the v2 API base endpoint."""
        response = self._request("GET", "/v2/", scope=None)
        if response.status == 404:
            raise RegistryError(
                f"registry {self.registry} does not serve the OCI distribution API at /v2/"
            )
        self._expect_ok(response, "GET /v2/")

    def tags(self, name: str) -> list[str]:
        """All tags of a repository, following pagination; a missing repository is an error."""
        _check_name(name)
        path = f"/v2/{name}/tags/list"
        found: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            response = self._request("GET", path, scope=_pull_scope(name))
            if response.status == 404:
                raise RegistryError(f"repository {name} not found in registry {self.registry}")
            self._expect_ok(response, f"GET {path}")
            try:
                payload = json.loads(response.body)
            except ValueError:
                raise RegistryError(
                    f"registry {self.registry} returned invalid JSON for the tags of {name}"
                ) from None
            page = payload.get("tags") if isinstance(payload, dict) else None
            found.extend(str(tag) for tag in page or ())
            next_path = self._next_page(response.header("Link"))
            if next_path is None:
                break
            path = next_path
        return found

    def digest(self, name: str, tag: str) -> str | None:
        """Manifest digest of name:tag (or name@digest), or None when the registry has none."""
        _check_name(name)
        _check_reference(tag)
        path = f"/v2/{name}/manifests/{tag}"
        headers = {"Accept": _ACCEPT_MANIFESTS}
        for method in ("HEAD", "GET"):
            response = self._request(method, path, scope=_pull_scope(name), headers=headers)
            if response.status == 404:
                return None
            self._expect_ok(response, f"{method} {path}")
            digest = response.header("Docker-Content-Digest").strip()
            if digest:
                return digest
            if method == "GET":
                return "sha256:" + hashlib.sha256(response.body).hexdigest()
        return None  # pragma: no cover - the loop always returns

    def verify_image(self, name: str, tag: str) -> ImageCheck:
        """Check one image without raising, so callers can report every image at once."""
        image = f"{name}:{tag}"
        try:
            digest = self.digest(name, tag)
        except RegistryError as exc:
            return ImageCheck(name, tag, exists=False, error=f"cannot check image {image}: {exc}")
        if digest is not None:
            return ImageCheck(name, tag, exists=True, digest=digest)
        return ImageCheck(name, tag, exists=False, error=self._missing_message(name, tag))

    def secret_values(self) -> tuple[str, ...]:
        """Secrets this client has used, for output masking: file-sourced ones aren't in env."""
        return self._auth.secret_values()

    def _missing_message(self, name: str, tag: str) -> str:
        base = f"image {name}:{tag} not found in registry {self.registry}"
        try:
            existing = self.tags(name)
        except RegistryError as exc:
            if f"repository {name} not found" in str(exc):
                return f"{base} (repository {name} does not exist)"
            return f"{base} (tags unavailable: {exc})"
        if not existing:
            return f"{base} (repository {name} has no tags)"
        ordered = sorted(existing, key=_natural_key)
        shown = ordered[-_TAGS_SHOWN:]
        more = len(ordered) - len(shown)
        listing = ", ".join(shown)
        if more:
            listing = f"{listing} and {more} more"
        return f"{base} (tags: {listing})"

    def _next_page(self, link: str) -> str | None:
        match = _LINK_NEXT_RE.search(link)
        if not match:
            return None
        url: str = urllib.parse.urljoin(self.base_url + "/", match.group(1))
        target = urllib.parse.urlsplit(url)
        if target.netloc and target.netloc.lower() != self._endpoint.netloc:
            return None
        return target.path + (f"?{target.query}" if target.query else "")

    def _expect_ok(self, response: _Response, what: str) -> None:
        if 200 <= response.status < 300:
            return
        if response.status == 403:
            raise RegistryError(f"access denied by registry {self.registry} for {what}")
        raise RegistryError(f"registry {self.registry} answered HTTP {response.status} to {what}")

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> _Response:
        url, what = self.base_url + path, f"registry {self.registry}"
        auth = self._auth.header(scope)
        response = self._transport.fetch(method, url, headers or {}, auth, what=what)
        if response.status != 401:
            return response
        challenge = _parse_challenge(response.header("WWW-Authenticate"))
        auth = self._auth.answer(challenge, scope)
        response = self._transport.fetch(method, url, headers or {}, auth, what=what)
        if response.status == 401:
            self._auth.forget(scope)
            raise self._auth.failed()
        return response


def _pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name) or len(name) > 255:
        raise RegistryError(f"invalid repository name {name!r}")


def _check_reference(reference: str) -> None:
    if not (_TAG_RE.fullmatch(reference) or _DIGEST_RE.fullmatch(reference)):
        raise RegistryError(f"invalid tag or digest {reference!r}")


def _natural_key(tag: str) -> list[tuple[int, int | str]]:
    return [
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", tag) if part
    ]
