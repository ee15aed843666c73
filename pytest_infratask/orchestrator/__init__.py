"""The orchestrator: runs one task through the stages (read, plan, guard, run,
record, finish, report) and is the only place that knows their order."""
