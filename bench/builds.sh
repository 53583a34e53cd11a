#!/usr/bin/env bash
# Builds a previous revision beside this checkout and runs bench/builds.mjs against it: both
# builds measured in one run. Usage: bench/builds.sh REV (a commit, tag or branch).
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bench/builds.sh REV}"
dir=$(mktemp -d /tmp/fbg-previous-XXXXXX)
trap 'rm -rf "$dir"' EXIT
git archive "$rev" | tar -x -C "$dir"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build)
BENCH_PREVIOUS="$dir" bash bench/run.sh builds
