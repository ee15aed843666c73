#!/usr/bin/env bash
# Install the Backlog.md CLI (npm package backlog.md, which brings its platform
# binary through optionalDependencies) into a cache outside the repository, for the
# `backlog` tests. A warm cache finishes at once.
#
# Usage: tests/backlogcli/install.sh          install unless cached (exit 1 on failure)
#        tests/backlogcli/install.sh --path   print the path of the backlog command
# Env:   INFRATASK_BACKLOG_CACHE              cache root (default ~/.cache/pytest-infratask/backlog)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=version.env
. "$here/version.env"

dir="${INFRATASK_BACKLOG_CACHE:-$HOME/.cache/pytest-infratask/backlog}/$BACKLOG_VERSION"
bin="$dir/node_modules/.bin/backlog"
if [ "${1:-}" = "--path" ]; then echo "$bin"; exit 0; fi

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$BACKLOG_VERSION" ]; then
    echo "cached backlog $BACKLOG_VERSION in $dir"
    exit 0
fi
command -v npm >/dev/null || { echo "npm is not installed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
# A package.json of its own, so npm installs here and never into a parent project.
[ -f "$dir/package.json" ] || echo '{"private": true}' > "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --save-exact "backlog.md@$BACKLOG_VERSION" >/dev/null)
got="$("$bin" --version 2>&1)" || { echo "backlog --version failed: $got" >&2; exit 1; }
[ "$got" = "$BACKLOG_VERSION" ] || { echo "backlog --version says $got, expected $BACKLOG_VERSION" >&2; exit 1; }
echo "installed backlog $BACKLOG_VERSION in $dir"
