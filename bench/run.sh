#!/usr/bin/env bash
# Runs one benchmark (bench/NAME.mjs) after installing the Debian tools the benches use if
# missing: wrk (pass-through), nginx (both baselines; Debian's includes the DAV module), curl
# (binary transfers), taskset (pinning).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: bench/run.sh proxy-throughput|binary-transfer|rewrite}"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f dist/app/cli.js ] || npm run --silent build
node "bench/$name.mjs"
