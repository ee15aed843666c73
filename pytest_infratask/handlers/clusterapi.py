"""Cluster access shared by handlers: the pinned context only, unreachable means blocked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_infratask.clients import cluster
from pytest_infratask.handlers.base import Blocked

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def api_for(env: dict[str, str], context: str | None) -> ApiClient:

    if not context:
        raise Blocked(
            "the task talks to a cluster but pins no kube context",
            ["add `kube_context: <context>` to the task's frontmatter"],
        )
    try:
        return cluster.load_api(env.get("KUBECONFIG"), context)
    except cluster.ClusterError as exc:
        raise Blocked(
            str(exc), [f"check that context {context!r} exists and is reachable"]
        ) from exc


def unreachable(exc: Exception, context: str | None) -> Blocked:
    return Blocked(
        str(exc),
        [
            f"check the API server of context {context!r} is up and reachable "
            "(VPN, kubeconfig server address), then rerun"
        ],
    )
