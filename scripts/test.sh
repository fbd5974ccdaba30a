#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, then runs the whole suite with
# the lint and type checks (scripts/check) beside it; fails when either fails.
# Extra arguments go to pytest (e.g. scripts/test.sh -k queue, scripts/test.sh tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
ensure_chromium
ensure_slurm
ensure_venv test
# The suite starts hundreds of Python processes (servers, agents, CLI calls): each would compile
# the package from source again where the environment says not to write bytecode
# (PYTHONDONTWRITEBYTECODE), about a fifth of a server's start. Compiled once here instead, into
# the git-ignored __pycache__ directories, where pytest also keeps its rewritten test modules.
unset PYTHONDONTWRITEBYTECODE
# A file that does not compile is left to pytest, which names it and fails the run.
"$VENV/bin/python" -m compileall -q runyard tests >/dev/null || true
# The checks (mypy: about a minute of CPU from a cold cache) run beside the tests, which wait
# on processes much of the time; their output follows the tests'.
check_log=$(mktemp)
nice -n 5 scripts/check >"$check_log" 2>&1 &
check_pid=$!
# The tests run in parallel (pytest-xdist): many of them wait on server, agent and browser
# processes, so more workers than cores pay. Tests go to workers one by one in the order
# tests/conftest.py gives them (slow ones first), except that a module's tests that share a
# module-scoped server or browser stay on one worker (loadgroup), so it starts once.
# A later -n in the arguments wins: scripts/test.sh -n 0 runs the tests serially.
status=0
"$VENV/bin/python" -m pytest -p no:cacheprovider -n 4 --dist loadgroup \
  --no-loadscope-reorder "$@" || status=$?
wait "$check_pid" || status=1
cat "$check_log" >&2
rm -f "$check_log"
exit "$status"
