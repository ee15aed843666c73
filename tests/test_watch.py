"""Waiting for Flux by watching: the verdict comes with the change, not on a poll."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from kubeapi import DEFAULT_TOKEN, KubeAPIServer, RecordedRequest, kube_api

from pytest_infratask.clients.cluster import (
    CheckResult,
    ObjectRef,
    ReconcileResult,
    check_flux_ready,
    flux_status,
    load_api,
    poll,
    request_reconcile,
    wait_ready,
    watch_check,
)

__all__ = ["kube_api"]

HR = ObjectRef.parse("helmrelease/prod/api")
HR_PATH = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/prod/helmreleases"
NO_POLL = 60.0
"""A poll interval no test may wait out: the verdict must come from the watch."""


@pytest.fixture
def api(kube_api: KubeAPIServer, tmp_path: Path) -> Any:
    return load_api(str(kube_api.write_kubeconfig(tmp_path / "kubeconfig")), "dev")


def reads(server: KubeAPIServer) -> list[RecordedRequest]:
    """Reads of the object: a list of it by name (its version is current), or a get."""
    return [
        r
        for r in server.requests
        if r.method == "GET"
        and not r.query.get("watch")
        and (r.path == f"{HR_PATH}/api" or r.query.get("fieldSelector") == ["metadata.name=api"])
    ]


def watches(server: KubeAPIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == HR_PATH and r.query.get("watch")]


class Waiting:
    """``wait_ready`` running in a thread, so a test can act while it waits."""

    def __init__(self, run: Callable[[], ReconcileResult]) -> None:
        self.result: ReconcileResult | None = None
        self._thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[], ReconcileResult]) -> None:
        self.result = run()

    def join(self, timeout: float = 15.0) -> ReconcileResult:
        self._thread.join(timeout)
        assert self.result is not None, "the wait did not end"
        return self.result


@pytest.fixture
def progressing(api: Any, kube_api: KubeAPIServer) -> Iterator[Waiting]:
    """A HelmRelease whose reconcile does not finish until the test lets it, and a
    ``wait_ready`` on it (poll interval 60 s, deadline 10 s) watching it."""
    kube_api.add_helmrelease("api", "prod", never_ready=True)
    requested = request_reconcile(api, HR)
    kube_api.clear_requests()
    waiting = Waiting(lambda: wait_ready(api, HR, requested, timeout=10, interval=NO_POLL))
    wait_for(lambda: len(kube_api.watch_positions) == 1, timeout=10)
    yield waiting
    kube_api.behave("helmrelease", "prod", "api", never_ready=False)
    waiting.join()


def finish(kube_api: KubeAPIServer) -> None:
    kube_api.behave("helmrelease", "prod", "api", never_ready=False)


def test_ready_is_seen_without_waiting_the_poll_interval(
    progressing: Waiting, kube_api: KubeAPIServer
) -> None:
    finished = time.monotonic()
    finish(kube_api)
    result = progressing.join()
    assert result.ok, result.message
    assert time.monotonic() - finished < 2.0  # not the 60 s poll interval
    assert len(reads(kube_api)) == 1, "read once, then watched"
    (watch,) = watches(kube_api)
    assert watch.query["fieldSelector"] == ["metadata.name=api"]
    assert watch.query["allowWatchBookmarks"] == ["true"]
    assert 1 <= int(watch.query["timeoutSeconds"][0]) <= 10  # bounded by the deadline


def test_gone_mid_watch_reads_again_and_sees_ready(
    progressing: Waiting, kube_api: KubeAPIServer
) -> None:
    kube_api.compact()  # the open watch ends with 410 Gone; its version is history
    wait_for(lambda: len(watches(kube_api)) == 2 and len(kube_api.watch_positions) == 1)
    assert len(reads(kube_api)) == 2, "410 Gone: the object is read afresh"
    finish(kube_api)
    result = progressing.join()
    assert result.ok, result.message


def test_a_dropped_watch_resumes_from_the_last_version_seen(
    api: Any, kube_api: KubeAPIServer
) -> None:
    kube_api.add_helmrelease("api", "prod", never_ready=True)
    requested = request_reconcile(api, HR)
    kube_api.clear_requests()
    waiting = Waiting(lambda: wait_ready(api, HR, requested, timeout=10, interval=0.05))
    wait_for(lambda: len(kube_api.watch_positions) == 1)
    label = kube_api.update("helmrelease", "prod", "api", {"metadata": {"labels": {"a": "b"}}})
    seen = int(label["metadata"]["resourceVersion"])
    wait_for(lambda: kube_api.watch_positions == [seen])  # the change was sent to the wait
    kube_api.drop_watches()
    wait_for(lambda: len(watches(kube_api)) == 2)
    assert watches(kube_api)[1].query["resourceVersion"] == [str(seen)]
    assert len(reads(kube_api)) == 1, "resumed, not read again"
    finish(kube_api)
    result = waiting.join()
    assert result.ok, result.message


def test_the_deadline_ends_the_watch_with_the_same_message(
    api: Any, kube_api: KubeAPIServer
) -> None:
    kube_api.add_helmrelease("api", "prod", never_ready=True, progress_message="Upgrading")
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=0.3, interval=NO_POLL)
    assert not result.ok
    assert result.message == (
        "timed out after 0.3s waiting for helmrelease/prod/api: "
        "last condition Ready=Unknown Progressing: Upgrading"
    )
    assert 0.3 <= result.elapsed < 2.0


def test_a_failure_during_the_watch_ends_the_wait_at_once(
    progressing: Waiting, kube_api: KubeAPIServer
) -> None:
    kube_api.behave("helmrelease", "prod", "api", fail=("UpgradeFailed", "timed out"))
    finish(kube_api)
    result = progressing.join()
    assert not result.ok
    assert result.message == "UpgradeFailed: timed out"


# the stand-in's watch, as the API server serves it


def stream(server: KubeAPIServer, query: str) -> Iterator[dict[str, Any]]:
    request = urllib.request.Request(
        f"{server.url}{HR_PATH}?watch=true&{query}",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        for line in response:
            yield json.loads(line)


def test_watch_streams_changes_after_a_version_and_closes_at_its_timeout(
    kube_api: KubeAPIServer,
) -> None:
    first = kube_api.add_helmrelease("api", "prod")
    start = first["metadata"]["resourceVersion"]
    kube_api.update("helmrelease", "prod", "api", {"metadata": {"labels": {"a": "b"}}})
    kube_api.add_helmrelease("other", "prod")
    began = time.monotonic()
    events = list(stream(kube_api, f"resourceVersion={start}&timeoutSeconds=1"))
    assert 1.0 <= time.monotonic() - began < 3.0
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "api"),
        ("ADDED", "other"),
    ]
    named = list(stream(kube_api, "fieldSelector=metadata.name%3Dother&timeoutSeconds=1"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in named] == [("ADDED", "other")]


def test_watch_sends_bookmarks_only_when_asked(kube_api: KubeAPIServer) -> None:
    version = kube_api.add_helmrelease("api", "prod")["metadata"]["resourceVersion"]
    kube_api.bookmark_every = 0.2
    asked = list(
        stream(kube_api, f"resourceVersion={version}&timeoutSeconds=1&allowWatchBookmarks=true")
    )
    assert asked and {e["type"] for e in asked} == {"BOOKMARK"}
    assert asked[0]["object"]["metadata"] == {"resourceVersion": version}
    assert list(stream(kube_api, f"resourceVersion={version}&timeoutSeconds=1")) == []


def test_watch_from_a_compacted_version_is_gone(kube_api: KubeAPIServer) -> None:
    version = kube_api.add_helmrelease("api", "prod")["metadata"]["resourceVersion"]
    kube_api.update("helmrelease", "prod", "api", {"metadata": {"labels": {"a": "b"}}})
    kube_api.compact()
    (error,) = list(stream(kube_api, f"resourceVersion={version}&timeoutSeconds=1"))
    assert error["type"] == "ERROR"
    assert error["object"]["code"] == 410 and error["object"]["reason"] == "Expired"


# verification checks of one object watch it too


def test_a_flux_check_passes_with_the_change_not_the_poll(
    api: Any, kube_api: KubeAPIServer
) -> None:
    kube_api.add_helmrelease("api", "prod", never_ready=True)
    request_reconcile(api, HR)  # Ready=Unknown until the test lets it finish
    done: list[CheckResult] = []
    thread = threading.Thread(
        target=lambda: done.append(watch_check(api, HR, flux_status, 10, NO_POLL)), daemon=True
    )
    thread.start()
    wait_for(lambda: len(kube_api.watch_positions) == 1)
    assert not done
    finished = time.monotonic()
    finish(kube_api)
    thread.join(15)
    assert done and done[0].ok, done
    assert time.monotonic() - finished < 2.0
    assert done[0] == check_flux_ready(api, HR)  # one verdict, read or watched


def test_a_watched_check_times_out_as_a_polled_one(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", never_ready=True, progress_message="Upgrading")
    request_reconcile(api, HR)
    watched = watch_check(api, HR, flux_status, 0.3, NO_POLL)
    polled = poll(lambda: check_flux_ready(api, HR), 0.3, 0.05)
    assert not watched.ok
    assert watched == polled
    assert watched.message == (
        "timed out after 0.3s: helmrelease/prod/api: Ready=Unknown Progressing: Upgrading"
    )


def test_an_object_older_than_the_watch_history_is_watched_from_the_list_version(
    api: Any, kube_api: KubeAPIServer
) -> None:
    """Its own resourceVersion is past the server's history (410 at once, each time);
    the list's is current."""
    kube_api.add_helmrelease("api", "prod", never_ready=True)
    request_reconcile(api, HR)
    kube_api.add_helmrelease("other", "prod")  # the server moves on
    kube_api.compact()
    kube_api.clear_requests()
    done: list[CheckResult] = []
    thread = threading.Thread(
        target=lambda: done.append(watch_check(api, HR, flux_status, 10, NO_POLL)), daemon=True
    )
    thread.start()
    wait_for(lambda: len(kube_api.watch_positions) == 1)
    finish(kube_api)
    thread.join(15)
    assert done and done[0].ok, done
    assert len(reads(kube_api)) == 1 and len(watches(kube_api)) == 1


@pytest.mark.parametrize("refused", [{"watch"}, {"list", "watch"}])
def test_where_watching_is_refused_the_object_is_read_every_poll_interval(
    api: Any, kube_api: KubeAPIServer, refused: set[str]
) -> None:
    kube_api.add_helmrelease("api", "prod", never_ready=True)
    requested = request_reconcile(api, HR)
    kube_api.forbidden = refused
    kube_api.clear_requests()
    waiting = Waiting(lambda: wait_ready(api, HR, requested, timeout=10, interval=0.05))
    wait_for(lambda: len(reads(kube_api)) >= 3)  # polled, as before watches
    finish(kube_api)
    result = waiting.join()
    assert result.ok, result.message
    assert kube_api.watch_positions == []
