"""Run example_tasks/ against a throwaway GitOps repository, a local registry and a
local stand-in for the Kubernetes API.

    python demo/run.py [--keep] [--reports DIR]

The registry is Debian's docker-registry on 127.0.0.1; images are built and pushed
with buildah. The Kubernetes API is the in-memory stand-in of demo/kubeapi.py, which
starts at once (``make demo-cluster`` runs tasks against a real one). Its Flux reads
the GitOps repository's remote (a bare repository created as ``origin``), never the
work tree, as Flux does: the run commits and pushes (``--infratask-push``), and the
deployment task waits until the Kustomization reports the pushed commit as applied.

Everything runs in a scratch directory that is removed at the end unless --keep is
given; the reports (per-task JSON, JUnit, pytest-json-report) are copied to --reports
(demo-run/reports in the checkout by default), so the paths printed stay valid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from kubeapi import KubeAPIServer
from localregistry import buildah_env, start_registry

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "TASK-001": "committed",
    "TASK-002": "committed",
    "TASK-003": "blocked",
    "TASK-004": "partially_complete",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(base: Path) -> tuple[Path, Path]:
    """The GitOps work tree and its bare ``origin``, which is what Flux reads."""
    repo = base / "gitops"
    origin = base / "origin.git"
    shutil.copytree(ROOT / "demo" / "gitops", repo)
    (repo / "tasks").mkdir(exist_ok=True)
    for task in sorted((ROOT / "example_tasks").glob("TASK-*.md")):
        shutil.copy(task, repo / "tasks" / task.name)
    git(base, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Platform GitOps repository")
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "-u", "origin", "main")
    return repo, origin


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def parse_args(doc: str | None, keeps: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the scratch directory ({keeps}) and print its path",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=ROOT / "demo-run" / "reports",
        metavar="DIR",
        help="where the reports are copied (default: demo-run/reports in the checkout)",
    )
    return parser.parse_args()


def git_identity() -> None:
    """The demo commits: a machine without a git identity gets the demo's."""
    os.environ.setdefault("GIT_AUTHOR_NAME", "infratask demo")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "demo@infratask.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", os.environ["GIT_AUTHOR_NAME"])
    os.environ.setdefault("GIT_COMMITTER_EMAIL", os.environ["GIT_AUTHOR_EMAIL"])


def pytest_command(reports: Path, *extra: str) -> list[str]:
    """pytest on the repository's tasks/, committing and pushing, with every report."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "tasks",
        "-p",
        "no:cacheprovider",
        "-v",
        "--infratask-commit",
        "--infratask-push",
        f"--infratask-report-dir={reports}",
        *extra,
        f"--junitxml={reports / 'junit.xml'}",
        "--json-report",
        f"--json-report-file={reports / 'report.json'}",
    ]


def show_task_changes(repo: Path) -> None:
    """Each task file's lines the run changed (ticked boxes, dates, progress)."""
    for task in sorted((repo / "tasks").glob("TASK-*.md")):
        diff = git(repo, "diff", "HEAD~0", "--", f"tasks/{task.name}") or git(
            repo, "log", "-p", "-n", "1", "--format=", "--", f"tasks/{task.name}"
        )
        print(f"--- {task.name}")
        print(
            "\n".join(
                line
                for line in diff.splitlines()
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
            )
        )


def copy_reports(reports: Path, dest: Path) -> None:
    """The reports outlive the scratch directory, so the printed paths stay valid."""
    banner("reports")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(reports, dest)
    for path in sorted(dest.iterdir()):
        print(path)


def task_statuses(reports: Path, tasks: Iterable[str]) -> dict[str, str]:
    return {
        task: json.loads((reports / f"{task}.json").read_text())["status"]
        for task in tasks
        if (reports / f"{task}.json").is_file()
    }


def main() -> int:
    args = parse_args(__doc__, "GitOps repo, registry storage, buildah root")
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="infratask-demo-"))
    git_identity()

    banner("local registry")
    registry = start_registry(base / "registry")
    print(f"docker-registry listening on {registry.hostport}")
    repo, origin = make_repo(base)
    banner("stand-in Kubernetes API")
    cluster = KubeAPIServer().start()
    try:
        start = git(repo, "rev-parse", "HEAD").strip()
        cluster.add_source("GitRepository", "flux-system", "flux-system", url=str(origin))
        cluster.add_kustomization(
            "apps", "flux-system", path="./apps", revision=f"main@sha1:{start}"
        )
        cluster.add_helmrelease(
            "api", "prod", chart="api", version="0.1.17", managed_by="flux-system/apps"
        )
        cluster.add_workload("Deployment", "api", "prod", replicas=2, labels={"app": "api"})
        for i in range(2):
            cluster.add_pod(f"api-{i}", "prod", labels={"app": "api"})
        kubeconfig = cluster.write_kubeconfig(base / "kubeconfig", context="demo")
        print(
            f"local stand-in for the Kubernetes API (not a real cluster) at {cluster.url}, "
            "context 'demo'"
        )
        print(f"throwaway GitOps repository: {repo} (Flux reads its origin, {origin})")

        _, buildah = buildah_env(base / "buildah")
        env = {
            **os.environ,
            **{k: v for k, v in buildah.items() if k != "PATH"},
            "HOME": os.environ.get("HOME", str(base)),
            "KUBECONFIG": str(kubeconfig),
            "REGISTRY_URL": registry.hostport,
            "BUILDAH_ROOT": str(base / "buildah"),
            "SIGNATURE_POLICY": str(base / "buildah" / "policy.json"),
        }
        reports = base / "reports"
        command = pytest_command(
            reports,
            # buildah keeps its images in the scratch directory: commands may write there
            "-o",
            f"infratask_writable={base / 'buildah'}",
        )
        banner("pytest " + " ".join(command[3:]))
        result = subprocess.run(command, cwd=repo, env=env, check=False)

        banner("what changed")
        print(git(repo, "log", "--format=%h %s%n%b", "-n", "3"))
        print("origin/main is at", git(origin, "rev-parse", "--short", "main").strip())
        applied = cluster.get("Kustomization", "flux-system", "apps")["status"]
        print("Flux applied", applied.get("lastAppliedRevision"))
        print(git(repo, "status", "--short"))
        show_task_changes(repo)
        copy_reports(reports, args.reports)
        statuses = task_statuses(reports, EXPECTED)
        print(f"\ndemo finished in {time.monotonic() - started:.1f}s; task status: {statuses}")
        print(
            "(TASK-003 is meant to be stopped by the security rules and the no-direct-apply "
            "check; TASK-004 keeps a manual criterion open)"
        )
        if args.keep:
            print(f"scratch directory kept: {base}")
        else:
            print(f"scratch directory {base} removed; rerun with --keep to look around")
        if statuses != EXPECTED or result.returncode != 1:
            print(f"unexpected outcome: wanted {EXPECTED}, pytest exit code 1", file=sys.stderr)
            return 1
        return 0
    finally:
        cluster.stop()
        if registry.process is not None:
            registry.process.terminate()
            registry.process.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
