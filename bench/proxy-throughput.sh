#!/usr/bin/env bash
# Installs the benchmark's Debian tools if missing (wrk, nginx), then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f dist/cli.js ] || npm run --silent build
node bench/proxy-throughput.mjs
