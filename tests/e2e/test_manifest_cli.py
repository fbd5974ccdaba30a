"""``runyard manifest validate`` as a real subprocess: summary, errors, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The Typer app in standalone mode: its own exit codes and messages, as click prints them.
LAUNCH = "from runyard.cli.app import app; app()"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_validate_prints_a_summary() -> None:
    res = cli("manifest", "validate", "examples/fleet/fleet.toml")
    assert res.returncode == 0, res.stderr
    assert ("examples/fleet/fleet.toml: 3 hosts, 3 blueprints, 8 jobs, 0 channels — valid"
            in res.stdout)
    assert "attention-causal" in res.stdout and "pi-arm" in res.stdout


def test_validate_json_lists_job_ids() -> None:
    res = cli("manifest", "validate", "--json", "examples/fleet/fleet.toml")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["ok"] is True and len(data["jobs"]) == 8
    assert all(len(j["job_key"]) == 64 for j in data["jobs"])


def test_validate_reports_every_error_one_per_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[[hosts]]\nid = "a"\nallow = ["["]\n\n[[jobs]]\nname = "j"\nblueprint = "none"\n')
    res = cli("manifest", "validate", "bad.toml", cwd=tmp_path)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [
        "bad.toml:3: hosts[0].allow[0]: malformed glob '[' (unclosed '[')",
        "bad.toml:7: jobs[0].blueprint: no blueprint named 'none' (known: none defined)",
        "runyard: bad.toml: 2 problems",
    ]
    res = cli("manifest", "validate", "--json", "bad.toml", cwd=tmp_path)
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert data["ok"] is False and [e["line"] for e in data["errors"]] == [3, 7]


def test_usage_errors_exit_2_and_missing_file_exits_1(tmp_path: Path) -> None:
    res = cli("manifest", "validate")
    assert res.returncode == 2 and "Missing argument" in res.stderr
    res = cli("manifest", "validate", "absent.toml", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == (
        "absent.toml: cannot read the manifest: No such file or directory")
