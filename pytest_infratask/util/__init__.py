"""Small utilities with one home each: durations, name lists, locks, check results."""
