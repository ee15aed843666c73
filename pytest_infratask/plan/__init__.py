"""Plan: which tasks and criteria run, in which order, after which others."""
