"""Small utilities with one home each: durations, name lists, file writes, locks, checks."""
