"""Registry logins where users have them: containers-auth.json files, Docker's config.json
and the credential helpers it names, checked against a real htpasswd-protected registry."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import sys
from pathlib import Path

import pytest
from helpers import meta_task
from registry_support import RunningRegistry, buildah_push

from pytest_infratask.clients.registry import RegistryClient, RegistryError, find_credentials

pytest_plugins = ["registry_support"]
pytestmark = pytest.mark.registry

HELPER = """\
#!{python}
# A Docker credential helper as docker-credential-ecr-login or -desktop behave:
# `get` reads the server from stdin, answers JSON, or says "not found" and exits 1.
import json, os, sys
server = sys.stdin.read().strip()
with open(os.environ["FAKE_HELPER_LOG"], "a") as log:
    log.write(f"{{os.path.basename(sys.argv[0])}} {{' '.join(sys.argv[1:])}} {{server}}\\n")
store = json.load(open(os.environ["FAKE_HELPER_STORE"]))
if sys.argv[1:] != ["get"] or server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = store[server]
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
"""


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class Helpers:
    """Fake ``docker-credential-*`` executables in a bin directory, with a store and a log."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.store = root / "store.json"
        self.store.write_text("{}")
        self.log = root / "helper.log"
        self.log.touch()

    def install(self, name: str) -> None:
        path = self.bin / f"docker-credential-{name}"
        path.write_text(HELPER.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def remember(self, server: str, user: str, secret: str) -> None:
        data = json.loads(self.store.read_text())
        data[server] = [user, secret]
        self.store.write_text(json.dumps(data))

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def helpers(tmp_path: Path) -> Helpers:
    return Helpers(tmp_path / "helpers")


@pytest.fixture
def env(tmp_path: Path, helpers: Helpers) -> dict[str, str]:
    """A HOME of its own and the helpers' bin first on PATH; no other login anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": f"{helpers.bin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_HELPER_STORE": str(helpers.store),
        "FAKE_HELPER_LOG": str(helpers.log),
    }


@pytest.fixture(scope="module")
def image(
    auth_registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    name = f"logins-{secrets.token_hex(4)}"
    digest = buildah_push(
        tmp_path_factory.mktemp("push"),
        auth_registry.hostport,
        name,
        "1.0",
        creds=auth_registry.creds,
    )
    return name, "1.0", digest


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def docker_config(env: dict[str, str], data: object) -> Path:
    return write_json(Path(env["HOME"]) / ".docker" / "config.json", data)


def digest_with(auth_registry: RunningRegistry, env: dict[str, str], name: str) -> str | None:
    return RegistryClient(auth_registry.hostport, env=env).digest(name, "1.0")


def test_creds_store_answers_for_the_registry(
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    env: dict[str, str],
    helpers: Helpers,
) -> None:
    name, _, digest = image
    assert auth_registry.password
    helpers.install("fake")
    helpers.remember(auth_registry.hostport, "ci", auth_registry.password)
    docker_config(env, {"credsStore": "fake", "auths": {auth_registry.hostport: {}}})

    assert digest_with(auth_registry, env, name) == digest
    assert helpers.calls() == [f"docker-credential-fake get {auth_registry.hostport}"]
    found = find_credentials(auth_registry.hostport, env=env)
    assert found is not None and found.source == "docker-credential-fake"
    assert auth_registry.password not in repr(found)


def test_cred_helpers_entry_wins_over_the_store(
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    env: dict[str, str],
    helpers: Helpers,
) -> None:
    name, _, digest = image
    assert auth_registry.password
    helpers.install("ecr-login")
    helpers.install("desktop")
    helpers.remember(auth_registry.hostport, "ci", auth_registry.password)
    docker_config(
        env,
        {
            "credsStore": "desktop",
            "credHelpers": {auth_registry.hostport: "ecr-login", "other.example": "desktop"},
        },
    )

    assert digest_with(auth_registry, env, name) == digest
    assert helpers.calls() == [f"docker-credential-ecr-login get {auth_registry.hostport}"]


def test_helper_without_an_entry_falls_back_to_auths(
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    env: dict[str, str],
    helpers: Helpers,
) -> None:
    name, _, digest = image
    assert auth_registry.password
    helpers.install("fake")
    docker_config(
        env,
        {
            "credsStore": "fake",
            "auths": {auth_registry.hostport: {"auth": b64("ci", auth_registry.password)}},
        },
    )

    assert digest_with(auth_registry, env, name) == digest
    assert helpers.calls() == [f"docker-credential-fake get {auth_registry.hostport}"]


def test_wrong_secret_from_a_helper_is_an_authentication_failure(
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    env: dict[str, str],
    helpers: Helpers,
) -> None:
    name, _, _ = image
    wrong = "wrong-" + secrets.token_hex(6)
    helpers.install("fake")
    helpers.remember(auth_registry.hostport, "ci", wrong)
    docker_config(env, {"credsStore": "fake"})

    with pytest.raises(RegistryError, match="authentication failed") as raised:
        digest_with(auth_registry, env, name)
    assert wrong not in str(raised.value)


def test_missing_helper_is_named(auth_registry: RunningRegistry, env: dict[str, str]) -> None:
    config = docker_config(env, {"credHelpers": {auth_registry.hostport: "nosuch-xyz"}})

    with pytest.raises(RegistryError) as raised:
        find_credentials(auth_registry.hostport, env=env)
    assert str(raised.value) == (
        f"credential helper docker-credential-nosuch-xyz (credHelpers in {config}) "
        "is not installed or not on PATH"
    )


def test_podman_and_buildah_logins_in_xdg_runtime_dir(
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``buildah login`` writes ${XDG_RUNTIME_DIR}/containers/auth.json; it comes before
    ~/.config/containers/auth.json and Docker's config."""
    name, _, digest = image
    assert auth_registry.password
    runtime = tmp_path / "run-user"
    write_json(
        runtime / "containers" / "auth.json",
        {"auths": {auth_registry.hostport: {"auth": b64("ci", auth_registry.password)}}},
    )
    stale = {"auths": {auth_registry.hostport: {"auth": b64("ci", "stale")}}}
    write_json(Path(env["HOME"]) / ".config" / "containers" / "auth.json", stale)
    docker_config(env, stale)
    env = {**env, "XDG_RUNTIME_DIR": str(runtime)}

    assert digest_with(auth_registry, env, name) == digest
    found = find_credentials(auth_registry.hostport, env=env)
    assert found is not None and found.source == str(runtime / "containers" / "auth.json")


def test_lookup_order(
    auth_registry: RunningRegistry, env: dict[str, str], tmp_path: Path, helpers: Helpers
) -> None:
    """Task/ini file, env, REGISTRY_AUTH_FILE (instead of XDG_RUNTIME_DIR), the user's
    containers auth.json, Docker's config: each source hides the ones after it."""
    host = auth_registry.hostport

    def entry(user: str) -> dict[str, object]:
        return {"auths": {host: {"auth": b64(user, "pw")}}}

    def source() -> tuple[str, str] | None:
        found = find_credentials(host, env=env, auth_file=task_file)
        return (found.username, found.source) if found else None

    task_file = tmp_path / "task-auth.json"
    helpers.install("fake")
    helpers.remember(host, "from-helper", "pw")
    docker_config(env, {"credsStore": "fake", **entry("from-docker")})
    assert source() == ("from-helper", "docker-credential-fake")
    user_file = write_json(Path(env["HOME"]) / ".config/containers/auth.json", entry("user"))
    assert source() == ("user", str(user_file))
    runtime = write_json(tmp_path / "xdg" / "containers" / "auth.json", entry("runtime"))
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "xdg")
    assert source() == ("runtime", str(runtime))
    named = write_json(tmp_path / "named.json", entry("named"))
    env["REGISTRY_AUTH_FILE"] = str(named)
    assert source() == ("named", str(named))
    env.update(REGISTRY_USERNAME="from-env", REGISTRY_PASSWORD="pw")
    assert source() == ("from-env", "REGISTRY_USERNAME/REGISTRY_PASSWORD")
    write_json(task_file, entry("task"))
    assert source() == ("task", str(task_file))


def test_build_task_uses_its_registry_auth_file_and_a_helper(
    pytester: pytest.Pytester,
    auth_registry: RunningRegistry,
    image: tuple[str, str, str],
    helpers: Helpers,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: ``registry_auth_file:`` names a config.json whose credsStore is asked."""
    name, tag, digest = image
    assert auth_registry.password
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("REGISTRY_PASSWORD", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    helpers.install("fake")
    helpers.remember(auth_registry.hostport, "ci", auth_registry.password)
    write_json(pytester.path / "ci" / "docker.json", {"credsStore": "fake"})
    task = meta_task(
        pytester.path / "TASK-001.md",
        {
            "id": "TASK-001",
            "title": "Build",
            "labels": ["builds"],
            "registry": auth_registry.hostport,
            "images": [f"{name}:{tag}"],
            "registry_auth_file": "ci/docker.json",
        },
        [("Image pushed", ['echo "push done by the release pipeline"'])],
    )
    reports = pytester.path / "reports"

    result = pytester.runpytest(
        "-p", "no:cacheprovider", str(task), f"--infratask-report-dir={reports}"
    )

    result.assert_outcomes(passed=2)  # the criterion, and ::verify finding the image
    contract = json.loads((reports / "TASK-001.json").read_text())
    assert [i["digest"] for i in contract["images"]] == [digest]
    assert helpers.calls() == [f"docker-credential-fake get {auth_registry.hostport}"] * 2
