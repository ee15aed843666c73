"""Small utilities with one home each: file writes, locks, git directories, scripts."""
