#!/usr/bin/env bash
# Installs Runyard into .venv and runs the demo (server, a local agent and real training jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_venv server,demo
exec "$VENV/bin/runyard" demo "$@"
