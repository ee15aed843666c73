"""Byte-exact scalar edits in YAML manifests, through the API and the ``infratask set`` CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from pytest_infratask.cli import main
from pytest_infratask.clients.manifest import ManifestError, set_value

RELEASES = """\
# Flux releases for the platform.
# Keep versions pinned; renovate bumps them.
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: api          # public API
  namespace: apps
spec:
  interval: 10m
  chart:
    spec:
      chart: api
      # pinned after the 0.1.17 incident
      version: "0.1.18"   # bump with care
      sourceRef: {kind: HelmRepository, name: internal}
  values:
    replicaCount: 3
    ratio: 1.20
    image:
      repository: registry.local/api
      tag: '1.20'
    containers:
      - name: api
        image: registry.local/api:1.4.2   # app
      - name: sidecar
        image: registry.local/proxy:2.0
...
---
# second release
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: web
  namespace: apps
spec:
  chart:
    spec:
      chart: web
      version: 0.1.18
  values:
    replicaCount: 2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api
  namespace: other
data:
  mode: "fast"
"""


def _write(tmp_path: Path, text: str, name: str = "releases.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _replace_line(text: str, line_no: int, old: str, new: str) -> str:
    """The expected file: only ``old`` on one 1-based line becomes ``new``."""
    lines = text.splitlines(keepends=True)
    assert lines[line_no - 1].count(old) == 1, lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new)
    return "".join(lines)


def _line_of(text: str, needle: str, nth: int = 0) -> int:
    hits = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth]


def _load(path: Path) -> list[Any]:
    return list(YAML(typ="safe").load_all(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    ("key", "selector", "value", "line_needle", "old_text", "new_text", "old_value"),
    [
        (
            "spec.chart.spec.version",
            {"match": {"kind": "HelmRelease", "name": "api"}},
            "0.1.19",
            '"0.1.18"',
            '"0.1.18"',
            '"0.1.19"',
            "0.1.18",
        ),
        (
            "spec.chart.spec.version",
            {"match": {"name": "web"}},
            "0.1.19",
            "version: 0.1.18",
            "0.1.18",
            "0.1.19",
            "0.1.18",
        ),
        (
            "spec.values.image.tag",
            {"document": 0},
            "1.21",
            "tag: '1.20'",
            "'1.20'",
            "'1.21'",
            "1.20",
        ),
        (
            "spec.values.containers.0.image",
            {"document": 0},
            "registry.local/api:1.5.0",
            "api:1.4.2",
            "registry.local/api:1.4.2",
            "registry.local/api:1.5.0",
            "registry.local/api:1.4.2",
        ),
        (
            "spec.chart.spec.sourceRef.name",
            {"document": 0},
            "public",
            "sourceRef:",
            "name: internal}",
            "name: public}",
            "internal",
        ),
    ],
)
def test_edit_changes_only_the_value_bytes(
    tmp_path: Path,
    key: str,
    selector: dict[str, Any],
    value: str,
    line_needle: str,
    old_text: str,
    new_text: str,
    old_value: str,
) -> None:
    path = _write(tmp_path, RELEASES)
    expected = _replace_line(RELEASES, _line_of(RELEASES, line_needle), old_text, new_text)

    assert set_value(path, key, value, **selector) == old_value

    assert path.read_bytes() == expected.encode("utf-8")


def test_string_that_looks_numeric_stays_a_string(tmp_path: Path) -> None:
    path = _write(tmp_path, "version: 0.1.18\ntag: v1\nname: x\n")

    set_value(path, "version", "1.20")
    set_value(path, "tag", "0.1.19")
    set_value(path, "name", "yes")

    assert path.read_text() == 'version: "1.20"\ntag: 0.1.19\nname: "yes"\n'
    assert _load(path) == [{"version": "1.20", "tag": "0.1.19", "name": "yes"}]


def test_typed_scalars_keep_their_type(tmp_path: Path) -> None:
    path = _write(tmp_path, "replicas: 3  # n\nratio: 1.5\nenabled: true\n")

    set_value(path, "replicas", "5")
    set_value(path, "ratio", "2.25")
    set_value(path, "enabled", "false")

    assert path.read_text() == "replicas: 5  # n\nratio: 2.25\nenabled: false\n"
    assert _load(path) == [{"replicas": 5, "ratio": 2.25, "enabled": False}]


def test_value_of_another_type_becomes_a_string(tmp_path: Path) -> None:
    path = _write(tmp_path, "replicas: 3\nport: 80\n")

    set_value(path, "replicas", "1.5")
    set_value(path, "port", "http")

    assert path.read_text() == 'replicas: "1.5"\nport: http\n'


def test_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    text = RELEASES.replace("\n", "\r\n")
    path = _write(tmp_path, text)
    expected = _replace_line(text, _line_of(text, "version: 0.1.18"), "0.1.18", "0.2.0")

    set_value(path, "spec.chart.spec.version", "0.2.0", match={"name": "web"})

    assert path.read_bytes() == expected.encode("utf-8")
    assert b"\n" not in path.read_bytes().replace(b"\r\n", b"")


def test_block_scalar_keeps_style_and_header_comment(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  script: |  # run me\n    echo old\n  after: 1\n")

    assert set_value(path, "data.script", "echo new\nexit 0\n") == "echo old\n"

    assert (
        path.read_text() == "data:\n  script: |  # run me\n    echo new\n    exit 0\n  after: 1\n"
    )
    assert _load(path) == [{"data": {"script": "echo new\nexit 0\n", "after": 1}}]


def test_value_needing_quotes_in_flow_mapping_is_quoted(tmp_path: Path) -> None:
    path = _write(tmp_path, "ref: {kind: Repo, name: a}\n")

    set_value(path, "ref.name", "b, c")

    assert path.read_text() == 'ref: {kind: Repo, name: "b, c"}\n'


@pytest.mark.parametrize(
    ("before", "key", "value", "after"),
    [
        ("a:\nb: 1\n", "a", "x", "a: x\nb: 1\n"),
        ("l:\n-\n- y\n", "l.0", "1.0", 'l:\n- "1.0"\n- y\n'),
        ("a: 'v1'\n", "a", "it's", "a: 'it''s'\n"),
        ("a: !!str 1.0  # c\n", "a", "2.0", "a: !!str 2.0  # c\n"),
        ("a: !Ref old\n", "a", "new", "a: !Ref new\n"),
        ("\ufeffa: 1\r\nb: x\r\n", "b", "\u00fc", "\ufeffa: 1\r\nb: \u00fc\r\n"),
    ],
)
def test_empty_quoted_tagged_and_bom_scalars(
    tmp_path: Path, before: str, key: str, value: str, after: str
) -> None:
    path = _write(tmp_path, before)

    set_value(path, key, value)

    assert path.read_bytes() == after.encode("utf-8")


def test_value_that_does_not_fit_an_explicit_tag_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "replicas: !!int 3\n")

    with pytest.raises(ManifestError, match="does not fit its explicit tag"):
        set_value(path, "replicas", "three")

    assert path.read_text() == "replicas: !!int 3\n"


def test_without_selector_the_single_document_holding_the_path_is_edited(tmp_path: Path) -> None:
    path = _write(tmp_path, RELEASES)

    set_value(path, "data.mode", "slow")

    assert _load(path)[2]["data"]["mode"] == "slow"


@pytest.mark.parametrize(
    ("key", "selector", "message"),
    [
        ("spec.chart.spec.versoin", {"document": 0}, "'versoin' not found under spec.chart.spec"),
        ("spec.chrt.spec.version", {"document": 1}, "'chrt' not found under spec"),
        ("spec.values.containers.7.image", {"document": 0}, "index 7 out of range"),
        ("spec.chart.spec.version", {"document": 9}, "no document 9: the file has 3"),
        ("spec.chart.spec.version", {"match": {"name": "nope"}}, "no document matches name=nope"),
        ("metadata.name", {"match": {"name": "api"}}, "documents 0, 2 all match name=api"),
        ("spec.chart.spec.version", {}, "is in documents 0, 1"),
        ("spec.chart", {"document": 0}, "spec.chart is a mapping, not a scalar"),
    ],
)
def test_errors_are_one_line_and_leave_the_file_alone(
    tmp_path: Path, key: str, selector: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, RELEASES)

    with pytest.raises(ManifestError) as raised:
        set_value(path, key, "1", **selector)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert path.read_text() == RELEASES


def test_missing_file_and_invalid_yaml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        set_value(tmp_path / "absent.yaml", "a", "1")
    broken = _write(tmp_path, "a: [1, 2\nb: 3\n", "broken.yaml")
    with pytest.raises(ManifestError, match=r"not valid YAML: .* at line \d+$"):
        set_value(broken, "a", "1")


def test_aliases_are_refused_rather_than_editing_two_places(tmp_path: Path) -> None:
    text = "base: &v 1.0.0\ncopy: *v\n"
    path = _write(tmp_path, text)

    with pytest.raises(ManifestError, match="copy is a YAML alias"):
        set_value(path, "copy", "2")
    with pytest.raises(ManifestError, match="anchored"):
        set_value(path, "base", "2")
    assert path.read_text() == text


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    value=st.text(st.characters(codec="utf-8"), max_size=20),
    line=st.sampled_from(['  tag: "1.0"   # c', "  tag: 1.0.0 # c", "  tag: '1'", "  tag: v1"]),
)
def test_any_string_reads_back_and_other_lines_are_untouched(
    tmp_path: Path, value: str, line: str
) -> None:
    before, after = "# head\nimage:\n", "  pull: Always\n---\nother: [1]\n"
    path = _write(tmp_path, f"{before}{line}\n{after}", "prop.yaml")

    set_value(path, "image.tag", value)

    text = path.read_text(encoding="utf-8")
    assert text.startswith(before + "  tag: ")
    assert text.endswith(after)
    assert _load(path) == [{"image": {"tag": value, "pull": "Always"}}, {"other": [1]}]


# --- command line ------------------------------------------------------------------------


def test_cli_set_prints_the_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, RELEASES)

    status = main(
        [
            "set",
            str(path),
            "spec.chart.spec.version",
            "0.2.0",
            "--match",
            "kind=HelmRelease,name=web",
        ]
    )

    assert status == 0
    assert capsys.readouterr().out == f"{path}: spec.chart.spec.version 0.1.18 -> 0.2.0\n"
    assert _load(path)[1]["spec"]["chart"]["spec"]["version"] == "0.2.0"


def test_cli_document_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, RELEASES)

    assert main(["set", str(path), "spec.values.replicaCount", "4", "--document", "1"]) == 0

    assert _load(path)[1]["spec"]["values"]["replicaCount"] == 4
    assert "replicaCount 2 -> 4" in capsys.readouterr().out


def test_cli_error_goes_to_stderr_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, RELEASES)

    assert main(["set", str(path), "spec.nope", "1", "--document", "0"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("infratask set: error: spec.nope: 'nope' not found")
    assert path.read_text() == RELEASES


@pytest.mark.parametrize(
    "argv",
    [
        ["set", "f.yaml", "a"],
        ["set", "f.yaml", "a", "1", "--document", "0", "--match", "kind=X"],
        ["set", "f.yaml", "a", "1", "--match", "kind"],
        ["frobnicate"],
    ],
)
def test_cli_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    path = _write(tmp_path, "image:\n  tag: v1  # keep\n")
    command = [sys.executable, "-m", "pytest_infratask.cli", "set", str(path), "image.tag"]

    ok = subprocess.run([*command, "v2"], capture_output=True, text=True, check=False)
    missing = subprocess.run(
        [sys.executable, "-m", "pytest_infratask.cli", "set", str(path), "image.nope", "v3"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"{path}: image.tag v1 -> v2\n", "")
    assert path.read_text() == "image:\n  tag: v2  # keep\n"
    assert missing.returncode == 1
    assert missing.stderr.startswith("infratask set: error: image.nope: 'nope' not found")


# -- yq-style key paths ------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    fluxcd.io/automated: "true"
spec:
  template:
    spec:
      containers:
        - name: api
          image: registry.local/api:1.4.2   # app
        - name: proxy
          image: registry.local/proxy:2.0
"""


@pytest.mark.parametrize(
    ("key", "line", "old", "new"),
    [
        (".spec.template.spec.containers[0].image", 12, "registry.local/api:1.4.2", "X:1"),
        ("spec.template.spec.containers.0.image", 12, "registry.local/api:1.4.2", "X:1"),
        (".spec.template.spec.containers[name=proxy].image", 14, "registry.local/proxy:2.0", "X:1"),
        (
            '.spec.template.spec.containers[name="proxy"].image',
            14,
            "registry.local/proxy:2.0",
            "X:1",
        ),
        (".spec.template.spec.containers[-1].image", 14, "registry.local/proxy:2.0", "X:1"),
        ('.metadata.annotations["fluxcd.io/automated"]', 6, '"true"', '"false"'),
        (".metadata.name", 4, "api", "web"),
    ],
)
def test_yq_style_paths_edit_one_value(
    tmp_path: Path, key: str, line: int, old: str, new: str
) -> None:
    path = _write(tmp_path, DEPLOYMENT, "deploy.yaml")

    set_value(path, key, new.strip('"'))

    assert path.read_text() == _replace_line(DEPLOYMENT, line, old, new)


def test_selector_picks_the_item_in_a_multi_document_file(tmp_path: Path) -> None:
    path = _write(tmp_path, RELEASES)

    old = set_value(path, ".spec.values.containers[name=sidecar].image", "proxy:3")

    assert old == "registry.local/proxy:2.0"
    assert _load(path)[0]["spec"]["values"]["containers"][1]["image"] == "proxy:3"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            ".spec.template.spec.containers[name=web].image",
            ".spec.template.spec.containers[name=web].image: [name=web] matches no item under "
            "spec.template.spec.containers (name values: api, proxy) (document 0)",
        ),
        (
            ".spec.template.spec.containers[5].image",
            "index [5] out of range under spec.template.spec.containers: 2 items",
        ),
        (".spec.template[0].spec", "[0] needs a list, but spec.template is a mapping"),
        (".spec.tempalte.spec", "'tempalte' not found under spec (document 0)"),
        (".spec.template.spec.containers[image=x].name", "[image=x] matches no item"),
        ("spec..name", "invalid key path 'spec..name'"),
        (".", "invalid key path '.'"),
        (".spec.template.spec.containers[0", "unclosed '[0'"),
        (".spec[name]", "[name] is neither [N], [key=value] nor"),
    ],
)
def test_yq_style_errors_name_the_segment(tmp_path: Path, key: str, message: str) -> None:
    path = _write(tmp_path, DEPLOYMENT, "deploy.yaml")

    with pytest.raises(ManifestError) as raised:
        set_value(path, key, "1")

    assert message in str(raised.value)
    assert path.read_text() == DEPLOYMENT


def test_selector_matching_two_items_is_refused(tmp_path: Path) -> None:
    text = "items:\n  - {name: a, v: 1}\n  - {name: a, v: 2}\n"
    path = _write(tmp_path, text)

    with pytest.raises(ManifestError, match=r"\[name=a\] matches items 0, 1 under items"):
        set_value(path, ".items[name=a].v", "3")
    assert path.read_text() == text


def test_cli_takes_a_yq_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, DEPLOYMENT, "deploy.yaml")

    assert main(["set", str(path), ".spec.template.spec.containers[name=api].image", "a:2"]) == 0

    assert "registry.local/api:1.4.2 -> a:2" in capsys.readouterr().out
    assert "image: a:2   # app\n" in path.read_text()


def test_create_adds_a_missing_frontmatter_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--create`` appends a missing key at the end of a task file's frontmatter,
    keeping every other byte; without it the missing key is an error naming it."""
    head = '---\nid: TASK-1\ntitle: "Keep: me"  # quoted, with a comment\nversion: 1\n'
    body = "---\n# T\n\n## Acceptance Criteria\n- [ ] x\n"
    task = tmp_path / "TASK-1.md"
    task.write_text(head + body)
    assert main(["set", str(task), "registry", "r.example:5000"]) == 1
    assert "add --create to add it" in capsys.readouterr().err
    assert task.read_text() == head + body
    assert main(["set", "--create", str(task), "registry", "r.example:5000"]) == 0
    assert main(["set", "--create", str(task), "note", "a: b # not a comment"]) == 0
    assert main(["set", str(task), "version", "2"]) == 0
    added = 'registry: r.example:5000\nnote: "a: b # not a comment"\n'
    assert task.read_text() == head.replace("version: 1", "version: 2") + added + body
    meta = YAML(typ="safe").load(task.read_text().split("---")[1])
    assert meta["note"] == "a: b # not a comment" and meta["version"] == 2
