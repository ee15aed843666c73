"""Run: a task's criteria as processes, with retries, masking and their outcomes."""
