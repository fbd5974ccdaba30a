"""What the Slurm executor writes for an attempt's job (the spec, the credential, the
supervisor's command line) and the mark a supervisor leaves when it leaves its report."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from runyard import errors
from runyard.agent.assignment import Assignment
from runyard.agent.slurm import supervision
from runyard.agent.supervise import LEFT_FILE, Spec

CLAIM = {"run": {"id": "r1", "constraints": {}}, "attempt": {"id": "at1", "number": 2},
         "lease": "lease-1", "lease_expires_at": 2_000_000_030.0, "command": ["python", "t.py"],
         "env": {"A": "1"}, "config": {"lr": 1}, "probe_interval_s": None, "seed": 7,
         "attempt_token": "rya_secret"}


def test_prepare_writes_the_spec_and_a_private_credential(tmp_path: Path) -> None:
    a = Assignment.from_claim(CLAIM)
    root = tmp_path / "r1" / "2"
    prefix = ["srun", "--kill-on-bad-exit=1"]
    argv = supervision.prepare(a, root, server="http://s:1", work_dir=tmp_path,
                               probe_interval_s=0.5, stop_grace_s=12, launch_prefix=prefix,
                               python="/py")
    assert argv == ["/py", "-m", "runyard.agent.supervise", "--server", "http://s:1", "--spec",
                    str(root / "spec.json"), "--token-file", str(root / "attempt.token"),
                    "--work-dir", str(tmp_path), "--probe-interval-s", "0.5",
                    "--stop-grace-s", "12", "--on-signal", "leave"]
    spec_text = (root / "spec.json").read_text()
    assert "rya_secret" not in spec_text and "rya_secret" not in " ".join(argv)
    token = root / "attempt.token"
    assert token.read_text() == "rya_secret"
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    spec = Spec.read(root / "spec.json")
    assert spec.launch_prefix == tuple(prefix)
    assert spec.assignment.attempt_id == "at1" and spec.assignment.lease == "lease-1"
    # Read long after the claim, the lease's length still sets the heartbeat pace.
    assert spec.assignment.stale_after_s == pytest.approx(a.stale_after_s)


def test_prepare_refuses_a_claim_without_an_attempt_credential(tmp_path: Path) -> None:
    a = Assignment.from_claim({k: v for k, v in CLAIM.items() if k != "attempt_token"})
    with pytest.raises(errors.ValidationError, match="attempt_token"):
        supervision.prepare(a, tmp_path / "x", server="http://s:1", work_dir=tmp_path,
                            probe_interval_s=1, stop_grace_s=1)
    assert not (tmp_path / "x" / "spec.json").exists()


def test_left_mark(tmp_path: Path) -> None:
    assert supervision.left_mark(tmp_path) is None
    assert supervision.left_mark(None) is None
    (tmp_path / LEFT_FILE).write_text(json.dumps({"why": "killed", "exit_code": None}))
    assert supervision.left_mark(tmp_path) == {"why": "killed", "exit_code": None}
    (tmp_path / LEFT_FILE).write_text("not json")
    assert supervision.left_mark(tmp_path) is None
