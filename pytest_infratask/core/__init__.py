"""The vocabulary every stage shares: the task model and its frontmatter schema,
statuses, outcomes, results, verdicts, settings and the masker.

Nothing here imports from the rest of the package; everything else may import it.
"""
