#!/usr/bin/env bash
# The pass-through bench (issue 2), as documented in bench/RESULTS.md; see run.sh.
exec bash "$(dirname "$0")/run.sh" proxy-throughput
