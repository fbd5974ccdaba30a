#!/bin/sh
# Progress protocol v1 from a plain POSIX shell: any language can take part.
#
# Writes the snapshot ($RUNYARD_PROGRESS_FILE) by writing a temporary file in the same
# directory and renaming it over the target with mv (atomic on one file system), and
# appends one JSON line per point to the metrics stream ($RUNYARD_METRICS_FILE).
# Stops early when $RUNYARD_STOP_FILE appears or on SIGTERM.
#
# Usage: sh examples/shell_progress.sh [STEPS]   (default 20; STEP_SLEEP=seconds per step)
set -eu

steps=${1:-20}
progress=${RUNYARD_PROGRESS_FILE:-./progress.json}
metrics=${RUNYARD_METRICS_FILE:-./metrics.jsonl}
stop_file=${RUNYARD_STOP_FILE:-}
pause=${STEP_SLEEP:-0}
seq=0
stopped=0
trap 'stopped=1' TERM

now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# write_snapshot PHASE STEP LOSS [STATUS]
write_snapshot() {
    seq=$((seq + 1))
    percent=$(awk -v s="$2" -v t="$steps" 'BEGIN { printf "%.3f", (t > 0 ? 100 * s / t : 0) }')
    extra=""
    if [ $# -ge 4 ]; then extra=",\"status\":\"$4\""; fi
    tmp="$progress.tmp.$$"
    printf '{"schema":"runyard.progress/v1","seq":%d,"updated_at":"%s","phase":"%s","step":%d,"total_steps":%d,"percent":%s,"metrics":{"loss":%s}%s}\n' \
        "$seq" "$(now)" "$1" "$2" "$steps" "$percent" "$3" "$extra" > "$tmp"
    mv -f "$tmp" "$progress"
}

write_snapshot setup 0 '"NaN"'
step=0
loss='"NaN"'
while [ "$step" -lt "$steps" ]; do
    if [ "$stopped" -eq 1 ] || { [ -n "$stop_file" ] && [ -f "$stop_file" ]; }; then
        stopped=1
        break
    fi
    step=$((step + 1))
    loss=$(awk -v s="$step" 'BEGIN { printf "%.6f", 1 / s }')
    printf '{"step":%d,"tag":"loss","value":%s,"at":"%s"}\n' "$step" "$loss" "$(now)" >> "$metrics"
    write_snapshot train "$step" "$loss"
    if [ "$pause" != 0 ]; then sleep "$pause"; fi
done
if [ "$stopped" -eq 1 ]; then
    write_snapshot finalize "$step" "$loss" stopped
else
    write_snapshot finalize "$step" "$loss" completed
fi
