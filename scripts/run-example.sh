#!/usr/bin/env bash
# Sets up, builds and runs `flux dev` on examples/hello (embedded PostgreSQL, no configuration).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/build.sh"
exec "$root/build/src/app/flux" dev "$root/examples/hello" "$@"
