"""Report: the output contract and everything made from it (JSON, terminal, summaries)."""
