"""Build (or reuse) and start the cluster stack for manual use; Ctrl-C stops it.

PYTHONPATH=demo python -m kubestack [--no-build] [DIR]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .stack import BUILD, Stack, StackError, missing_components


def main(argv: list[str]) -> int:
    build = "--no-build" not in argv
    args = [a for a in argv if a != "--no-build"]
    if build and subprocess.run(["bash", str(BUILD)], check=False).returncode:
        print("some components did not build; see the lines above", file=sys.stderr)
    missing = missing_components()
    if missing:
        print(f"cannot start: not built: {', '.join(missing)}", file=sys.stderr)
        return 1
    workdir = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="infratask-cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stack = Stack(workdir)
    try:
        stack.start()
    except StackError as exc:
        print(f"cluster did not start: {exc}\n{stack.log_tails()}", file=sys.stderr)
        return 1
    git = stack.git.url if stack.git else "-"
    registry = stack.registry.url if stack.registry else "- (docker-registry not installed)"
    print(
        f"cluster up in {time.monotonic() - started:.1f}s\n"
        f"  export KUBECONFIG={stack.kubeconfig}   (contexts: dev = admin, viewer = read-only)\n"
        f"  API server  {stack.server}\n  git server  {git}/<name>.git "
        f"(repositories under {workdir / 'git'})\n  registry    {registry}\n"
        f"  logs        {stack.logs}\nCtrl-C stops everything.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
