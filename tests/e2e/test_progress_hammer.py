"""The snapshot file is always whole, valid JSON to a concurrent reader (hammered)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from runyard import timestamps
from runyard.progress import snapshot as snapshot_mod

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import os, sys, time
    import runyard.sdk as sdk
    import runyard.sdk.run as run_mod
    run_mod.DRAIN_INTERVAL_S = 0.001  # write snapshots as fast as the thread can
    with sdk.start_run(total_steps=10**9, snapshot_interval_s=0.0, handle_sigterm=False) as run:
        print("ready", flush=True)
        # Until the test has seen enough (its file appears), or two minutes at most.
        end = time.monotonic() + 120
        step = 0
        while not os.path.exists(sys.argv[1]) and time.monotonic() < end:
            # Messages of changing length: the file grows and shrinks between writes.
            run.progress(step=step, message="x" * (step * 37 % 3000))
            run.log({"loss": 1.0 / (step + 1)}, step=step)
            step += 1
            if step % 50 == 0:
                time.sleep(0.001)  # let the SDK's thread write snapshot after snapshot
""")


def test_snapshot_is_always_valid_json_to_concurrent_readers(tmp_path: Path) -> None:
    progress = tmp_path / "progress.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update({"PYTHONPATH": str(REPO), "RUNYARD_RUN_ID": "hammer",
                "RUNYARD_PROGRESS_FILE": str(progress),
                "RUNYARD_METRICS_FILE": str(tmp_path / "metrics.jsonl")})
    enough = tmp_path / "enough"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(enough)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    seen: list[set[int]] = [set(), set()]
    bad: list[str] = []
    reads = [0, 0]

    def reader(i: int) -> None:
        while writer.poll() is None:
            try:
                raw = progress.read_bytes()
            except FileNotFoundError:  # never after the first write: os.replace is atomic
                bad.append("missing")
                continue
            reads[i] += 1
            try:
                snap = json.loads(raw)
            except ValueError as exc:
                bad.append(f"{exc}: {raw[:80]!r}")
                continue
            if snap.get("schema") != "runyard.progress/v1" or "updated_at" not in snap:
                bad.append(f"incomplete: {raw[:80]!r}")
            seen[i].add(snap["seq"])

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    # As many reads as the checks below want, however slowly a loaded machine gives them.
    deadline = time.monotonic() + 120
    while (min(reads) <= 200 or any(len(s) <= 100 for s in seen)) and writer.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    enough.touch()
    for t in threads:
        t.join(60)
    _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert not bad, bad[:5]
    assert min(reads) > 200 and all(len(s) > 100 for s in seen), (reads, [len(s) for s in seen])
    final = json.loads(progress.read_bytes())
    assert final["status"] == "completed"
    assert snapshot_mod.validate_snapshot(final) == []
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".runyard-")]
    assert leftovers == []  # no temporary file left behind


def test_write_snapshot_replaces_atomically_under_a_tight_loop(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    done = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not done.is_set():
            try:
                json.loads(path.read_bytes())
            except FileNotFoundError:
                pass
            except ValueError as exc:
                errors.append(str(exc))

    t = threading.Thread(target=read)
    t.start()
    seq = 0
    while seq < 500:  # a count, not a time: a loaded machine writes fewer a second
        seq += 1
        snapshot_mod.write_snapshot(path, {"schema": "runyard.progress/v1", "seq": seq,
                                           "updated_at": timestamps.format_time(),
                                           "message": "y" * (seq % 5000)})
    done.set()
    t.join()
    assert not errors
