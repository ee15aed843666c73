"""RegistryClient against real docker-registry processes and real buildah pushes."""

from __future__ import annotations

import base64
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_infratask.clients.registry import (
    Credentials,
    RegistryClient,
    RegistryError,
    find_credentials,
)
from tests.registry_support import RunningRegistry, TokenFront, buildah_push

pytest_plugins = ["tests.registry_support"]

registry_mark = pytest.mark.registry


def unique(prefix: str) -> str:
    """Repository names unique per test, since the registries live for the whole session."""
    return f"{prefix}-{secrets.token_hex(4)}"


def hermetic_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose HOME has no docker config, so only the given sources count."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), **extra}


def write_docker_config(home: Path, key: str, entry: dict[str, str]) -> Path:
    config = home / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"auths": {key: entry}}))
    return config


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def pushed_auth_image(
    auth_registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    name = unique("private")
    tmp = tmp_path_factory.mktemp("push-auth")
    digest = buildah_push(tmp, auth_registry.hostport, name, "1.0", creds=auth_registry.creds)
    return name, "1.0", digest


# --- anonymous registry -------------------------------------------------------------------


@registry_mark
def test_ping_real_registry(registry: RunningRegistry, tmp_path: Path) -> None:
    RegistryClient(registry.hostport, env=hermetic_env(tmp_path)).ping()


@registry_mark
def test_pushed_image_found_with_buildah_digest(registry: RunningRegistry, tmp_path: Path) -> None:
    name = unique("api")
    pushed = buildah_push(tmp_path, registry.hostport, name, "0.1.17")
    client = RegistryClient(registry.hostport, env=hermetic_env(tmp_path))

    assert pushed.startswith("sha256:")
    assert client.digest(name, "0.1.17") == pushed
    assert client.tags(name) == ["0.1.17"]
    check = client.verify_image(name, "0.1.17")
    assert check.exists
    assert check.digest == pushed
    assert check.error is None


@registry_mark
def test_missing_tag_error_names_image_registry_and_tags(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    name = unique("api")
    buildah_push(tmp_path, registry.hostport, name, "0.1.17")
    client = RegistryClient(registry.hostport, env=hermetic_env(tmp_path))

    assert client.digest(name, "0.1.18") is None
    check = client.verify_image(name, "0.1.18")
    assert not check.exists
    assert check.digest is None
    assert check.error == (
        f"image {name}:0.1.18 not found in registry {registry.hostport} (tags: 0.1.17)"
    )


@registry_mark
def test_missing_repository(registry: RunningRegistry, tmp_path: Path) -> None:
    name = unique("never-pushed")
    client = RegistryClient(registry.hostport, env=hermetic_env(tmp_path))

    assert client.digest(name, "latest") is None
    with pytest.raises(RegistryError, match=f"repository {name} not found in registry"):
        client.tags(name)
    check = client.verify_image(name, "latest")
    assert not check.exists
    assert check.error == (
        f"image {name}:latest not found in registry {registry.hostport} "
        f"(repository {name} does not exist)"
    )


@registry_mark
def test_digest_reference_and_nested_name(registry: RunningRegistry, tmp_path: Path) -> None:
    name = f"team/{unique('svc')}"
    pushed = buildah_push(tmp_path, registry.hostport, name, "v1")
    client = RegistryClient(f"http://{registry.hostport}", env=hermetic_env(tmp_path))

    assert client.digest(name, "v1") == pushed
    assert client.digest(name, pushed) == pushed


def test_invalid_names_are_rejected_before_any_request(tmp_path: Path) -> None:
    client = RegistryClient("127.0.0.1:9", env=hermetic_env(tmp_path))
    with pytest.raises(RegistryError, match="invalid repository name"):
        client.digest("../etc", "latest")
    with pytest.raises(RegistryError, match="invalid tag"):
        client.digest("api", "bad/tag")


# --- Basic auth ---------------------------------------------------------------------------


@registry_mark
def test_basic_auth_without_credentials_says_so(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_auth_image
    client = RegistryClient(auth_registry.hostport, env=hermetic_env(tmp_path))
    with pytest.raises(RegistryError, match="authentication required for registry"):
        client.digest(name, tag)


@registry_mark
def test_basic_auth_from_env(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, digest = pushed_auth_image
    assert auth_registry.password is not None
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD=auth_registry.password)
    client = RegistryClient(auth_registry.hostport, env=env)

    client.ping()
    assert client.verify_image(name, tag).digest == digest
    assert client.tags(name) == [tag]


@registry_mark
@pytest.mark.parametrize("key_form", ["{hostport}", "https://{hostport}", "http://{hostport}/v1/"])
@pytest.mark.parametrize("entry_form", ["auth", "username"])
def test_basic_auth_from_docker_config(
    auth_registry: RunningRegistry,
    pushed_auth_image: tuple[str, str, str],
    tmp_path: Path,
    key_form: str,
    entry_form: str,
) -> None:
    name, tag, digest = pushed_auth_image
    assert auth_registry.password is not None
    env = hermetic_env(tmp_path)
    if entry_form == "auth":
        entry = {"auth": b64("ci", auth_registry.password)}
    else:
        entry = {"username": "ci", "password": auth_registry.password}
    write_docker_config(Path(env["HOME"]), key_form.format(hostport=auth_registry.hostport), entry)

    client = RegistryClient(auth_registry.hostport, env=env)
    assert client.digest(name, tag) == digest


@registry_mark
def test_docker_config_entry_for_another_port_is_not_used(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_auth_image
    assert auth_registry.password is not None
    env = hermetic_env(tmp_path)
    write_docker_config(Path(env["HOME"]), "127.0.0.1:1", {"auth": b64("ci", "x")})
    with pytest.raises(RegistryError, match="authentication required"):
        RegistryClient(auth_registry.hostport, env=env).digest(name, tag)


@registry_mark
def test_basic_auth_from_registry_auth_file(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, digest = pushed_auth_image
    assert auth_registry.password is not None
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"auths": {auth_registry.hostport: {"auth": b64("ci", auth_registry.password)}}})
    )
    env = hermetic_env(tmp_path, REGISTRY_AUTH_FILE=str(auth_file))
    # A wrong docker config entry proves REGISTRY_AUTH_FILE is consulted first.
    write_docker_config(Path(env["HOME"]), auth_registry.hostport, {"auth": b64("ci", "wrong")})

    assert RegistryClient(auth_registry.hostport, env=env).digest(name, tag) == digest
    found = find_credentials(auth_registry.hostport, env=env)
    assert found is not None
    assert found.source == str(auth_file)


@registry_mark
def test_auth_file_argument(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, digest = pushed_auth_image
    assert auth_registry.password is not None
    auth_file = tmp_path / "explicit.json"
    auth_file.write_text(
        json.dumps({"auths": {auth_registry.hostport: {"auth": b64("ci", auth_registry.password)}}})
    )
    client = RegistryClient(auth_registry.hostport, env=hermetic_env(tmp_path), auth_file=auth_file)
    assert client.digest(name, tag) == digest


@registry_mark
def test_env_credentials_take_precedence(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, digest = pushed_auth_image
    assert auth_registry.password is not None
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD=auth_registry.password)
    write_docker_config(Path(env["HOME"]), auth_registry.hostport, {"auth": b64("ci", "wrong")})
    assert RegistryClient(auth_registry.hostport, env=env).digest(name, tag) == digest


@registry_mark
def test_wrong_password_fails_without_leaking_it(
    auth_registry: RunningRegistry, pushed_auth_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_auth_image
    wrong = "Wr0ng-" + secrets.token_hex(8)
    env = hermetic_env(tmp_path)
    write_docker_config(Path(env["HOME"]), auth_registry.hostport, {"auth": b64("ci", wrong)})
    client = RegistryClient(auth_registry.hostport, env=env)

    with pytest.raises(RegistryError) as caught:
        client.digest(name, tag)
    message = str(caught.value)
    assert message.startswith(f"authentication failed for registry {auth_registry.hostport}")
    assert "~/.docker/config.json or REGISTRY_AUTH_FILE" in message
    secret_forms = (wrong, b64("ci", wrong))
    texts = [message, repr(caught.value), repr(client), str(client.verify_image(name, tag))]
    for text in texts:
        assert "\n" not in text
        for secret in secret_forms:
            assert secret not in text
    for secret in secret_forms:
        assert caught.value.__cause__ is None or secret not in str(caught.value.__cause__)


@registry_mark
def test_secret_values_cover_file_sourced_credentials_and_tokens(
    token_front: TokenFront, pushed_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_image
    env = hermetic_env(tmp_path)
    entry = {"auth": b64("ci", token_front.password)}
    write_docker_config(Path(env["HOME"]), token_front.hostport, entry)
    client = RegistryClient(token_front.hostport, env=env)
    assert client.secret_values() == ()

    client.verify_image(name, tag)
    values = client.secret_values()
    assert token_front.password in values
    assert entry["auth"] in values
    assert len(values) == 3  # password, its Basic encoding, the issued bearer token


def test_credentials_repr_masks_secrets(tmp_path: Path) -> None:
    creds = Credentials("ci", "hunter2-secret", "REGISTRY_USERNAME/REGISTRY_PASSWORD")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2-secret" not in text
        assert "REGISTRY_USERNAME" in text
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD="hunter2-secret")
    assert "hunter2-secret" not in repr(find_credentials("127.0.0.1:5000", env=env))


def test_malformed_auth_file_is_a_clean_error(tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text('{"auths": {"127.0.0.1:5000": {"auth": "s3cret-not-json')
    env = hermetic_env(tmp_path, REGISTRY_AUTH_FILE=str(auth_file))
    with pytest.raises(RegistryError, match="invalid JSON") as caught:
        find_credentials("127.0.0.1:5000", env=env)
    assert "s3cret" not in str(caught.value)


# --- Bearer token flow --------------------------------------------------------------------


@pytest.fixture
def token_front(registry: RunningRegistry) -> Iterator[TokenFront]:
    front = TokenFront(backend=registry)
    front.start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def pushed_image(registry: RunningRegistry, tmp_path: Path) -> tuple[str, str, str]:
    name = unique("bearer")
    return name, "2.0", buildah_push(tmp_path, registry.hostport, name, "2.0")


@registry_mark
def test_bearer_registry_fixture(
    bearer_registry: RunningRegistry, pushed_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, digest = pushed_image
    assert bearer_registry.password is not None
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD=bearer_registry.password)
    client = RegistryClient(bearer_registry.hostport, env=env)
    client.ping()
    assert client.verify_image(name, tag).digest == digest
    assert client.tags(name) == [tag]


@registry_mark
@pytest.mark.parametrize("token_key", ["token", "access_token"])
def test_bearer_flow_requests_pull_scope(
    token_front: TokenFront, pushed_image: tuple[str, str, str], tmp_path: Path, token_key: str
) -> None:
    name, tag, digest = pushed_image
    token_front.token_key = token_key
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD=token_front.password)
    client = RegistryClient(token_front.hostport, env=env)

    assert client.digest(name, tag) == digest
    assert token_front.token_requests == [{"service": "test", "scope": f"repository:{name}:pull"}]
    # The token is reused for the same repository.
    assert client.digest(name, tag) == digest
    assert len(token_front.token_requests) == 1


@registry_mark
def test_bearer_wrong_password(
    token_front: TokenFront, pushed_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_image
    env = hermetic_env(tmp_path, REGISTRY_USERNAME="ci", REGISTRY_PASSWORD="nope-" + "x" * 12)
    client = RegistryClient(token_front.hostport, env=env)
    with pytest.raises(RegistryError, match="authentication failed for registry") as caught:
        client.digest(name, tag)
    assert "nope-" not in str(caught.value)
    check = client.verify_image(name, tag)
    assert not check.exists
    assert check.error is not None
    assert f"{name}:{tag}" in check.error
    assert "authentication failed" in check.error


@registry_mark
def test_bearer_without_credentials(
    token_front: TokenFront, pushed_image: tuple[str, str, str], tmp_path: Path
) -> None:
    name, tag, _ = pushed_image
    client = RegistryClient(token_front.hostport, env=hermetic_env(tmp_path))
    with pytest.raises(RegistryError, match="authentication required for registry"):
        client.digest(name, tag)


# --- transport ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registry_arg", "insecure", "expected"),
    [
        ("registry.example.com", (), "https://registry.example.com"),
        ("registry.example.com:5000", (), "https://registry.example.com:5000"),
        ("https://registry.example.com/", (), "https://registry.example.com"),
        ("registry.example.com", ["registry.example.com"], "http://registry.example.com"),
        ("registry.example.com:5000", ["registry.example.com"], "http://registry.example.com:5000"),
        (
            "registry.example.com:5000",
            ["registry.example.com:5000"],
            "http://registry.example.com:5000",
        ),
        (
            "registry.example.com:5001",
            ["registry.example.com:5000"],
            "https://registry.example.com:5001",
        ),
        ("http://registry.example.com", ["registry.example.com"], "http://registry.example.com"),
        ("127.0.0.1:5000", (), "http://127.0.0.1:5000"),
        ("127.8.9.10:5000", (), "http://127.8.9.10:5000"),
        ("localhost:5000", (), "http://localhost:5000"),
        ("LOCALHOST:5000", (), "http://localhost:5000"),
        ("[::1]:5000", (), "http://[::1]:5000"),
        ("https://127.0.0.1:5000", (), "https://127.0.0.1:5000"),
        ("10.0.0.5:5000", (), "https://10.0.0.5:5000"),
    ],
)
def test_scheme_selection(registry_arg: str, insecure: list[str], expected: str) -> None:
    client = RegistryClient(registry_arg, insecure=insecure, env={})
    assert client.base_url == expected


def test_plain_http_refused_for_non_loopback_host() -> None:
    with pytest.raises(RegistryError, match="plain HTTP is not allowed for registry"):
        RegistryClient("http://registry.example.com", env={})


@pytest.mark.parametrize("bad", ["", "ftp://host", "host/path", "user@host"])
def test_invalid_registry_strings(bad: str) -> None:
    with pytest.raises(RegistryError):
        RegistryClient(bad, env={})


def closed_port() -> int:
    """A port nothing listens on: bound, then released without listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_registry_names_it(tmp_path: Path) -> None:
    hostport = f"127.0.0.1:{closed_port()}"
    client = RegistryClient(hostport, env=hermetic_env(tmp_path), timeout=5)
    with pytest.raises(RegistryError) as caught:
        client.ping()
    assert str(caught.value) == f"registry {hostport} is unreachable: connection refused"
    check = client.verify_image("api", "1.0")
    assert not check.exists
    assert check.error == (
        f"cannot check image api:1.0: registry {hostport} is unreachable: connection refused"
    )


@registry_mark
def test_https_to_plain_http_registry_is_a_tls_error(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    client = RegistryClient(f"https://{registry.hostport}", env=hermetic_env(tmp_path))
    with pytest.raises(RegistryError, match=f"registry {registry.hostport} is unreachable: TLS"):
        client.ping()


def test_silent_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        hostport = f"127.0.0.1:{server.getsockname()[1]}"
        client = RegistryClient(hostport, env=hermetic_env(tmp_path), timeout=0.3)
        with pytest.raises(RegistryError, match=f"registry {hostport} is unreachable: timed out"):
            client.ping()
