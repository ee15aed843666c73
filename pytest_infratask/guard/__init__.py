"""Guard: the safety checks that run before any command, and what they look at."""
