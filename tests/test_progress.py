"""Live progress: masked, prefixed output while commands run; compact on a terminal, full
with -s, plain lines in CI, nothing with -q; under xdist the controller shows the workers'."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import item, task_md, write_task

Run = Callable[..., pytest.RunResult]
SECRET = "s3cr3t-value-42"
TALKS = item("Talks", 'echo "one"; echo "token is $API_TOKEN" >&2; printf "partial"')


def talking_task(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("API_TOKEN", SECRET)
    return write_task(pytester.path, "TASK-001.md", task_md(TALKS))


def test_full_output_with_s_is_prefixed_and_masked(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = talking_task(pytester, monkeypatch)
    result = run(str(path), "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["[[]TASK-001 #1[]] one", "[[]TASK-001 #1[]] token is ***", "[[]TASK-001 #1[]] partial"]
    )
    assert SECRET not in result.stdout.str()


def test_quiet_stays_quiet(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = talking_task(pytester, monkeypatch)
    for args in (["-q"], ["-q", "-s"], ["--infratask-output=quiet", "-s"]):
        result = run(str(path), *args)
        assert "[TASK-001 #1" not in result.stdout.str(), args
        assert "one" not in result.stdout.str().splitlines()
        path.write_text(task_md(TALKS))


def test_ci_output_is_plain_lines(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = talking_task(pytester, monkeypatch)
    monkeypatch.setenv("CI", "true")
    result = run(str(path), "-o", "infratask_progress_interval=0")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "\x1b" not in out
    result.stdout.re_match_lines([r"\[TASK-001 #1\] running \d+\.\ds: \S.*"])
    assert SECRET not in out


def test_compact_form_draws_on_the_status_line_and_erases(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = talking_task(pytester, monkeypatch)
    result = run(str(path), "-v", "--infratask-output=compact")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    drawn = re.findall(r"(?:\x1b7|\x1b8\x1b\[K) \[TASK-001 #1 \d+\.\ds\]([^\x1b]*)", out)
    assert drawn, repr(out)
    assert all(SECRET not in text for text in drawn)
    # Erased before pytest writes the result, on the criterion's own line.
    assert re.search(r"TASK-001.md::ac1-talks \x1b7.*\x1b8\x1b\[K.*PASSED", out), repr(out)
    assert "[TASK-001 #1] " not in out


WAITS = (
    'echo "waiting for {go}"; for i in $(seq 1200); do [ -f {go} ] && exit 0; sleep 0.1; done\n'
    "exit 1"
)


@pytest.mark.parametrize(
    ("mode", "pattern"),
    [
        ("full", r"\[(gw\d)\] \[(TASK-00\d) #1\] waiting for go"),
        ("lines", r"\[(gw\d)\] (TASK-00\d) #1 running [\d.]+s: waiting for go"),
        ("compact", r"(gw\d) (TASK-00\d) #1 [\d.]+s: waiting for go"),
    ],
)
def test_controller_shows_what_each_worker_runs_while_it_runs(
    pytester: pytest.Pytester, mode: str, pattern: str
) -> None:
    """Each criterion waits for a file the test creates only once the controller's output
    shows it running: output that arrived only at the end would time the run out."""
    for n in (1, 2):
        meta = f"id: TASK-00{n}\ntitle: T{n}\nretries: 0"
        write_task(
            pytester.path,
            f"TASK-00{n}.md",
            task_md(item("Waits", WAITS.format(go=f"go{n}")), meta=meta),
        )
    # Unbuffered output would hide a display that forgets to flush.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONUNBUFFERED")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        f"--infratask-output={mode}",
        "-o",
        "infratask_progress_interval=0",
        "TASK-001.md",
        "TASK-002.md",
    ]
    proc = subprocess.Popen(
        command, cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(proc.stdout.fileno(), 4096), b"")),
        daemon=True,
    )  # type: ignore[union-attr]
    reader.start()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 120
    try:
        while len(seen) < 2 and time.monotonic() < deadline and proc.poll() is None:
            text = b"".join(chunks).decode("utf-8", "replace")
            for worker, task in re.findall(pattern, text):
                if task not in seen:
                    seen[task] = worker
                    (pytester.path / f"go{task[-1]}").touch()
            time.sleep(0.05)
        assert proc.wait(timeout=120) == 0, b"".join(chunks).decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    assert sorted(seen) == ["TASK-001", "TASK-002"], b"".join(chunks).decode()[-3000:]
