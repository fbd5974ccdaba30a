"""The shipped example fleet: its manifest validates, and its scripts run as the agent would."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runyard.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"

if importlib.util.find_spec("sklearn") is None:  # the processes it starts import it
    pytest.skip("scikit-learn is not installed", allow_module_level=True)


def test_example_manifest_is_valid() -> None:
    m = load_manifest(FLEET / "fleet.toml")
    assert [h.host_id for h in m.hosts] == ["gpu-box", "cpu-server", "pi-arm"]
    assert {b.name for b in m.blueprints} == {"gbt", "mlp", "attention"}
    assert m.blueprint("attention").config_schema is not None  # loaded from schemas/
    pi = m.hosts[2]
    assert pi.admits("mlp-small", "mlp") and not pi.admits("mlp-large", "mlp")
    assert not pi.admits("attention-mean", "attention")
    assert len({j.key for j in m.jobs}) == len(m.jobs) == 8


def test_example_scripts_run_end_to_end(tmp_path: Path) -> None:
    """Render each job's command as an agent would, run it, and check the protocol files."""
    m = load_manifest(FLEET / "fleet.toml")
    procs = {}
    for name in ("gbt-breast-cancer", "mlp-small", "attention-causal"):
        job = m.job(name)
        work = tmp_path / name
        (work / "artifacts").mkdir(parents=True)
        config_file = work / "config.json"
        config_file.write_text(json.dumps(job.config))
        # One thread each: OpenMP/BLAS pools oversubscribe a busy 2-core machine badly.
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "RUNYARD_RUN_ID": name, "RUNYARD_ATTEMPT": "1",
               "RUNYARD_CONFIG_FILE": str(config_file),
               "RUNYARD_PROGRESS_FILE": str(work / "progress.json"),
               "RUNYARD_METRICS_FILE": str(work / "metrics.jsonl"),
               "RUNYARD_ARTIFACT_DIR": str(work / "artifacts"),
               "RUNYARD_STOP_FILE": str(work / "stop")}
        argv = job.render_command(python=sys.executable, config_file=config_file)
        procs[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        work = tmp_path / name
        snap = json.loads((work / "progress.json").read_text())
        assert snap["schema"] == "runyard.progress/v1" and snap["updated_at"].endswith("Z")
        assert snap["phase"] == "finalize" and snap["message"] == "done"
        assert snap["step"] == snap["total_steps"] > 0 and snap["percent"] == 100.0
        assert snap["seq"] >= 3 and 0.5 < snap["metrics"]["val_accuracy"] <= 1.0
        points = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
        assert {p["tag"] for p in points} >= {"val_loss", "val_accuracy"}
        assert all(set(p) == {"step", "tag", "value", "at"} for p in points)
        steps = [p["step"] for p in points if p["tag"] == "val_loss"]
        assert steps == sorted(steps) and len(steps) >= 2
        result = json.loads((work / "artifacts" / "result.json").read_text())
        assert result["config"] == m.job(name).config and result["seed"] == 0
        assert not list(work.glob(".progress-*")), "temporary snapshot files are cleaned up"


@pytest.mark.parametrize("mode", ["softmax", "causal", "mean"])
def test_attention_toy_gradients_match_finite_differences(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FLEET))
    import train_attention as t

    rng = np.random.default_rng(0)
    p = t.init(rng, 8, 6, 8, 10)
    x, y = rng.normal(size=(5, 8, 8)), rng.integers(0, 10, 5)
    logits, cache = t.forward(p, x, mode)
    _, dlogits = t.cross_entropy(logits, y)
    grads = t.backward(p, cache, dlogits, mode)
    for name, w in p.items():
        for _ in range(4):
            i = tuple(int(rng.integers(0, s)) for s in w.shape)
            old = w[i]
            w[i] = old + 1e-5
            up = t.cross_entropy(t.forward(p, x, mode)[0], y)[0]
            w[i] = old - 1e-5
            down = t.cross_entropy(t.forward(p, x, mode)[0], y)[0]
            w[i] = old
            assert abs((up - down) / 2e-5 - grads[name][i]) < 1e-6, (name, i)
