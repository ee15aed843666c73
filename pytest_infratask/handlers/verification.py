"""Verification tasks: check health and state; they change nothing."""

from __future__ import annotations

from .base import Handler


class VerificationHandler(Handler):
    task_type = "verification"

    def next_steps(self, status: str) -> list[str]:
        if status in ("ready_for_verification", "committed"):
            return ["state verified; close the task"]
        return ["investigate the failing checks before closing the task"]
