"""The forms a secret takes, each masked by the one masker: base64 inside a longer
encoded text at any alignment (a Basic auth header), credentials recognisable by their
shape under any variable name, the secrets of a kubeconfig that does not parse, every
file of the credential list, and secrets across the cuts of a long streamed line."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_infratask.clients import kubeconfig
from pytest_infratask.clients.registry import find_credentials
from pytest_infratask.core.credentials import credential_files, registry_auth_files
from pytest_infratask.core.masking import MASK, Masker
from pytest_infratask.report.live import PARTIAL_LIMIT, Display, Live

GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GITLAB = "glpat-" + "xY9zW8vU7tS6rQ5pO4nM"
AWS = "AKIAIOSFODNN7EXAMPLE"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
KEY_BODY = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "VJTUt9Us8cKjMzEfYyjiWA4R4"]
PEM = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(KEY_BODY) + "\n-----END PRIVATE KEY-----"


def b64(data: bytes | str, encode: object = base64.b64encode) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return encode(raw).decode()  # type: ignore[operator]


def stable_core(prefix: bytes, secret: bytes, encode: object = base64.b64encode) -> str:
    """The characters of base64(prefix + secret) made of the secret's bits alone: what
    must never be seen, whatever surrounds the secret."""
    text = b64(prefix + secret, encode)
    low, high = 8 * len(prefix), 8 * (len(prefix) + len(secret))
    inside = [k for k in range(len(text)) if 6 * k >= low and 6 * k + 6 <= high]
    return text[inside[0] : inside[-1] + 1] if inside else ""


# -- base64 at any alignment ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=12),
    secret=st.text(
        st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x7f"),
        min_size=6,
        max_size=40,
    ),
    after=st.binary(max_size=4),
)
def test_base64_of_a_secret_inside_anything_keeps_none_of_its_core(
    prefix: bytes, secret: str, after: bytes
) -> None:
    mask = Masker({"SERVICE_TOKEN": secret})
    raw = secret.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = b64(prefix + b":" + raw + after, encode)
        core = stable_core(prefix + b":", raw, encode)
        assert len(core) >= 6
        shown = mask(f"Authorization: Basic {encoded}\n")
        assert core not in shown, (encoded, shown)
        assert MASK in shown


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "abcd", "abcde"])
def test_each_alignment_of_a_known_secret_is_masked(prefix: str) -> None:
    secret = "tok-SECRET-1234567"
    encoded = b64(prefix + secret)
    shown = Masker({"API_TOKEN": secret})(f"x {encoded} y")
    assert stable_core(prefix.encode(), secret.encode()) in encoded  # the control
    assert stable_core(prefix.encode(), secret.encode()) not in shown
    assert shown.startswith("x ") and shown.endswith(" y")


@pytest.fixture
def listener() -> Iterator[int]:
    """A local HTTP endpoint answering 200 to one request, for curl to talk to."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(timeout=10)


def test_curl_verbose_basic_auth_header_is_masked(listener: int) -> None:
    password = "Pa55-w0rd-for-curl"
    run = subprocess.run(
        ["curl", "-sv", "-u", f"deploy-bot:{password}", f"http://127.0.0.1:{listener}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    header = next(line for line in run.stderr.splitlines() if "Authorization: Basic" in line)
    assert b64(f"deploy-bot:{password}") in header  # what curl really prints
    shown = Masker({"DEPLOY_PASSWORD": password})(header)
    assert stable_core(b"deploy-bot:", password.encode()) not in shown
    assert shown.startswith("> Authorization: Basic ") and MASK in shown


# -- shapes and names -----------------------------------------------------------------


@pytest.mark.parametrize("token", [GITHUB, GITLAB, AWS, SLACK, JWT], ids=lambda t: t[:6])
def test_token_shapes_are_masked_under_any_name_and_in_any_text(token: str) -> None:
    learned = Masker({"NOTES": token, "MY_THING": "plain words"})
    assert learned(f"value={token};") == f"value={MASK};"
    assert b64(token) not in learned(b64(token)), "a value of that shape is learned whole"
    assert Masker()(f"printed {token} here") == f"printed {MASK} here"
    assert learned("plain words") == "plain words"


def test_private_key_blocks_are_masked_whole_cut_and_escaped() -> None:
    mask = Masker()
    assert mask(f"before\n{PEM}\nafter") == f"before\n{MASK}\nafter"
    cut_start = "\n".join(KEY_BODY) + "\n-----END PRIVATE KEY-----\ndone."
    assert not any(line in mask(cut_start) for line in KEY_BODY)
    cut_end = "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY[0] + "\n"
    assert KEY_BODY[0] not in mask(cut_end)
    escaped = json.dumps({"key": PEM})
    assert not any(line in mask(escaped) for line in KEY_BODY)
    streamed = Masker().lines()
    shown = [streamed(line) for line in f"x\n{PEM}\nafter".splitlines()]
    assert shown[0] == "x" and shown[-1] == "after"
    assert not any(body in "\n".join(shown) for body in KEY_BODY)


def test_secret_names_and_harmless_values() -> None:
    mask = Masker(
        {
            "DB_PASS": "hunter2-db",
            "GH_PAT": "pat-value-123",
            "BASIC_AUTH": "basic-value-456",
            "DB_PWD": "pwd-value-789",
            "BYPASS_CACHE": "bypass-value",
            "AUTH_METHOD": "oauth2",
            "COMPASS": "north-by-west",
            "PWD": "/work/repo",
            "OLDPWD": "/work/old",
            "FEATURE_PASS": "true",
        }
    )
    shown = mask("hunter2-db pat-value-123 basic-value-456 pwd-value-789")
    assert shown == " ".join([MASK] * 4)
    harmless = "bypass-value oauth2 north-by-west /work/repo /work/old true"
    assert mask(harmless) == harmless


# -- credential files -----------------------------------------------------------------


def test_a_kubeconfig_that_does_not_parse_still_has_its_secrets_masked(tmp_path: Path) -> None:
    token = "kube-token-from-a-broken-file-77"
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nusers:\n- name: dev\n  user:\n"
        f"    token: {token}\n    password: 'broken-pass-88'\n  : oops: [\n"
    )
    env = {"KUBECONFIG": str(path)}
    with pytest.raises(kubeconfig.KubeconfigError) as caught:
        kubeconfig.contexts(env)
    message = str(caught.value)
    assert str(path) in message and "line 7" in message
    assert token not in message and "oops" not in message
    mask = Masker.for_run(env)
    assert mask(f"{token} broken-pass-88") == f"{MASK} {MASK}"


def _locations(root: Path) -> tuple[dict[str, str], Path]:
    """An environment setting every variable that moves a credential file, and the
    task's own auth file."""
    env = {
        "HOME": str(root / "home"),
        "REGISTRY_AUTH_FILE": str(root / "named.json"),
        "XDG_RUNTIME_DIR": str(root / "run"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "DOCKER_CONFIG": str(root / "docker"),
        "KUBECONFIG": f"{root / 'kube-a'}:{root / 'kube-b'}",
    }
    return env, root / "task-auth.json"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_every_credential_location_a_client_reads_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Iterates the one list: each location alone holds a secret; the client reads it
    (registry logins through find_credentials, kubeconfigs through merged), and the
    masker masks it, also when the task's env moves every location elsewhere."""
    user_env, auth_file = _locations(tmp_path / "user")
    task_env, _ = _locations(tmp_path / "task")
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    files = credential_files(user_env, auth_file)
    lookup = registry_auth_files(user_env, auth_file)
    assert len(files) == 7 and len(lookup) == 4  # the shadowed runtime file is masked only
    for number, (kind, path) in enumerate(files):
        secret = f"secret-at-location-{number}"
        if kind == "registry":
            login = {"auths": {"registry.example": {"auth": b64(f"bot:{secret}")}}}
            _write(path, json.dumps(login))
        else:
            _write(path, f"users:\n- name: u{number}\n  user:\n    token: {secret}\n")
        if kind == "registry" and path in lookup:
            found = find_credentials("registry.example", env=user_env, auth_file=auth_file)
            assert found is not None and found.password == secret, path
        elif kind == "kubeconfig":
            users = kubeconfig.merged(user_env)["users"]
            assert [u["user"]["token"] for u in users] == [secret], path
        for env in (user_env, task_env):  # the task's env cannot hide the user's files
            shown = Masker.for_run(env, auth_file=auth_file)(f"[{secret}]")
            assert shown == f"[{MASK}]", (kind, path)
        path.unlink()


# -- long streamed lines --------------------------------------------------------------


class Recorder(Display):
    def __init__(self) -> None:
        self.shown: list[str] = []

    def line(self, live: Live, text: str) -> None:
        self.shown.append(text)


@pytest.mark.parametrize(
    ("secret", "known"),
    [("straddling-secret-value-0123456789", True), (JWT, False)],
    ids=["known value", "jwt by its shape"],
)
@pytest.mark.parametrize("split", [1, 10, 17, 30])
def test_a_secret_across_a_long_line_cut_is_never_shown_in_part(
    secret: str, known: bool, split: int
) -> None:
    display = Recorder()
    live = Live(display, "TASK-001 #1", Masker({"API_TOKEN": secret} if known else {}))
    live(b"x" * (PARTIAL_LIMIT + 100) + b" " + secret[:split].encode(), 1)
    live(secret[split:].encode() + b" and the rest\n", 1)
    live.close()
    shown = "".join(display.shown)
    assert len(display.shown) >= 2, "the long line was shown in pieces"
    half = len(secret) // 2
    assert secret[:half] not in shown and secret[half:] not in shown
    assert shown.endswith(f"{MASK} and the rest")
