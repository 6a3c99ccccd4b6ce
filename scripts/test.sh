#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite: unit tests and the end-to-end tests against the
# real flux binary, real V8, real PostgreSQL and real HTTP over loopback.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
cd "$root/build"
ctest --output-on-failure --timeout 900
