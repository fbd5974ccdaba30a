#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, runs the lint and type checks
# (scripts/check), then the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k queue, scripts/test.sh tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
ensure_chromium
ensure_venv test
scripts/check
# The tests run in parallel (pytest-xdist): many of them wait on server, agent and browser
# processes, so more workers than cores pay. Tests go to workers one by one in the order
# tests/conftest.py gives them (slow ones first), except that a module's tests that share a
# module-scoped server or browser stay on one worker (loadgroup), so it starts once.
# RUNYARD_TEST_WORKERS=0 (or -n 0) runs them serially.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -n "${RUNYARD_TEST_WORKERS:-4}" \
  --dist loadgroup --no-loadscope-reorder "$@"
