"""What a shell command line does, read as text: the lints behind the safety checks.

These read the command as written; they are not a shell. docs/safety.md ("What holds by
construction, what is a lint") says which guards hold by construction and which are
only these text checks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# A tool name as a command word: bare, or behind a path (``/usr/local/bin/kubectl``,
# ``./kubectl``, ``$HOME/bin/helm``), but not part of a file name (``kubectl.md``).
_PATH = r"(?<![\w./~$-])(?:[\w.~${}-]*/)*"


_END = r"(?![\w.])"


CLUSTER_COMMAND = re.compile(
    _PATH + r"(?:kubectl(?!\s+(?:kustomize|version\s+--client|completion|config\s+view))"
    r"|helm(?!\s+(?:template|lint|package|dependency|dep|repo|show|pull|create|version|plugin"
    r"|completion|env))"
    r"|flux(?!\s+(?:version\s+--client|build|diff\s+kustomization\s+--dry-run|completion|envsubst"
    r")))" + _END
)


DIRECT_APPLY = re.compile(
    _PATH + r"(?:kubectl" + _END + r"[^\n|;&]*?\s(?P<k>apply|create|replace|patch|delete|edit|set"
    r"|scale|annotate|label|rollout\s+restart)\b"
    r"|helm" + _END + r"[^\n|;&]*?\s(?P<h>install|upgrade|uninstall|rollback)\b)"
)


# kubectl honours the last --dry-run; only client, server (or a bare flag) are dry runs.
DRY_RUN_FLAG = re.compile(r"\s--dry-run(?:=(\S*))?(?=\s|$)")


_SEPARATOR = re.compile(r"[|;&]")


_ASSIGNMENT = re.compile(
    r"(?:^|[;&|\s])(?:export\s+|local\s+|readonly\s+|declare\s+)?([A-Za-z_]\w*)="
    r"('[^']*'|\"[^\"]*\"|[^\s;&|]*)"
)


_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")


def is_dry_run(command: str) -> bool:
    flags = DRY_RUN_FLAG.findall(command)
    return bool(flags) and flags[-1].lower() in ("", "client", "server", "true")


def logical_lines(script: str) -> list[str]:
    """Lines as the shell sees them: backslash-newline continuations joined."""
    return re.sub(r"\\\r?\n", " ", script).splitlines()


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a ``#`` starting a word, unquoted)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i]
    return line


def shell_view(script: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Logical lines as a careful reader takes them, for the text checks: comments
    dropped, variables the task or the script sets expanded (``k=kubectl; $k``),
    quotes removed (``kube""ctl``, ``'apply'``). A lint, not a shell: the checks that
    hold whatever the spelling are the private kubeconfig and the read-only proxy."""
    values = dict(env or {})
    lines = []
    for raw in logical_lines(script):
        line = strip_comment(raw)
        for match in _ASSIGNMENT.finditer(line):
            values[match[1]] = match[2].strip("'\"")
        line = _VARIABLE.sub(lambda m: values.get(m[1] or m[2], m[0]), line)
        lines.append(line.replace('"', "").replace("'", ""))
    return lines


def reaches_cluster(scripts: Sequence[str]) -> bool:
    return any(CLUSTER_COMMAND.search(line) for s in scripts for line in shell_view(s))
