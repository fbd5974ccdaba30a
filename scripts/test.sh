#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, runs the lint and type checks
# (scripts/check), then the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k queue).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
ensure_chromium
ensure_slurm
ensure_venv test
scripts/check
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
