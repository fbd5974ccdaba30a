"""The supervisor's light start: ``python -m runyard.agent.supervise`` takes the options of
``runyard supervise`` and answers bad ones alike, and imports nothing that launching the
training command does not need (runyard/agent/supervise.py, "Start-up")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIGHT = [sys.executable, "-m", "runyard.agent.supervise"]
TYPER = [sys.executable, "-m", "runyard", "supervise"]

PROBE = """
import json, sys
from runyard.agent import supervise
from runyard.agent.api import WorkerAPI
api = WorkerAPI("http://127.0.0.1:1", "rya_x")
heavy = sorted({m for m in sys.modules if m.split(".")[0] in {
    "httpx", "typer", "click", "rich", "jsonschema", "psutil", "zstandard", "sqlalchemy",
    "fastapi", "pydantic"} or m.startswith(("runyard.manifest", "runyard.cli", "runyard.sdk",
                                            "runyard.server", "runyard.store"))})
api.close()
print(json.dumps(heavy))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "SLURM"))}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(tmp_path), **extra})
    return env


def _run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=_env(tmp_path, **env), capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_the_supervisor_module_imports_only_what_a_launch_needs(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-c", PROBE], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_a_task_runs_with_its_rank_and_exit_code(tmp_path: Path) -> None:
    code = "import os, sys; print('rank', os.environ['RANK'], os.environ['WORLD_SIZE']); exit(3)"
    proc = _run([*LIGHT, "--task", "--rank-from-env", "--", sys.executable, "-c", code],
                tmp_path, SLURM_PROCID="2", SLURM_NTASKS="4", SLURMD_NODENAME="n7")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "[n7 rank 2] rank 2 4\n"


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["--task"], {}, 1, "runyard: command: --task needs the command after --"),
    (["--", "true"], {}, 1, "runyard: command: only --task takes a command"),
    ([], {}, 1, "runyard: server: give --server URL or set RUNYARD_SERVER"),
    (["--server", "http://127.0.0.1:1"], {}, 1, "runyard: spec: give --spec FILE"),
    (["--spec", "s.json", "--on-signal", "later"], {"RUNYARD_SERVER": "http://127.0.0.1:1"},
     1, "runyard: on_signal: expected report or leave, got 'later'"),
    (["--server", "http://127.0.0.1:1", "--spec", "s.json"], {}, 1,
     "runyard: token: give the attempt's credential in RUNYARD_ATTEMPT_TOKEN"),
    (["--server", "http://127.0.0.1:1", "--spec", "s.json", "--token-file", "loose"], {}, 1,
     "runyard: token file: loose may be read by others (mode 644); make it 0600"),
    (["--server", "http://127.0.0.1:1", "--spec", "s.json"], {"RUNYARD_ATTEMPT_TOKEN": "rya_x"},
     1, "runyard: claim.run: expected an object with an id"),
    (["--server", "http://127.0.0.1:1", "--spec", "missing.json"],
     {"RUNYARD_ATTEMPT_TOKEN": "rya_x"}, 1, "runyard: spec: cannot read missing.json"),
])
def test_bad_options_are_answered_as_runyard_supervise_answers_them(
        tmp_path: Path, args: list[str], env: dict[str, str], code: int, message: str) -> None:
    (tmp_path / "s.json").write_text("{}")
    (tmp_path / "loose").write_text("rya_x")
    (tmp_path / "loose").chmod(0o644)
    light = _run([*LIGHT, *args], tmp_path, **env)
    typer = _run([*TYPER, *args], tmp_path, **env)
    assert light.returncode == typer.returncode == code, (light.stderr, typer.stderr)
    assert light.stderr.startswith(message), light.stderr
    assert light.stderr.splitlines()[0] == typer.stderr.splitlines()[0]


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    proc = _run([*LIGHT, "--bogus"], tmp_path)
    assert proc.returncode == 2
    assert "unrecognized arguments: --bogus" in proc.stderr
