"""Whether the run is a GitHub Actions step: its log reads workflow commands
(``::add-mask::``, ``::error``), and its job page shows ``$GITHUB_STEP_SUMMARY``.
Light on purpose: asked at every session's start."""

from __future__ import annotations

import os


def on_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"
