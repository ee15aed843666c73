"""Run: a task's command blocks as sandboxed processes, and which failures a retry can fix."""
