"""Record: what a run did, in the task file and in git, as it happens."""
