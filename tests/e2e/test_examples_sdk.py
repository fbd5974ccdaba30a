"""The SDK examples in examples/ run as scripts and leave a completed run in the embedded
store (a real SQLite file), as a user would see it with ``runyard up``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runyard.store import RunFilter, default_url, open_store

REPO = Path(__file__).resolve().parents[2]

CASES = [
    ("pytorch_loop.py", ["--epochs", "2", "--batches", "10"], "torch", "pytorch-mlp",
     {"loss": 20, "lr": 20}, 2),
    ("hf_trainer.py", ["--steps", "6"], "transformers", "tiny-gpt2", {"loss": 1}, 2),
    ("sklearn_partial_fit.py", ["--epochs", "4"], "sklearn", "sgd-classifier",
     {"train_acc": 4, "val_acc": 4}, 0),
    ("notebook_local_run.py", [], None, "notebook-sine", {"signal": 200, "noise": 200}, 0),
]


@pytest.mark.parametrize(("script", "args", "needs", "name", "counts", "checkpoints"), CASES,
                         ids=[c[0] for c in CASES])
def test_example_runs_and_is_recorded(tmp_path: Path, script: str, args: list[str],
                                      needs: str | None, name: str, counts: dict[str, int],
                                      checkpoints: int) -> None:
    if needs:
        pytest.importorskip(needs)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env.update({"PYTHONPATH": str(REPO), "RUNYARD_DATA_DIR": str(data),
                "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"})
    proc = subprocess.run([sys.executable, str(REPO / "examples" / script), *args], env=env,
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "completed" in proc.stdout and "embedded" in proc.stdout
    store = open_store(default_url(data))
    try:
        runs = store.list_runs(RunFilter())
        assert [(r["name"], r["status"], r["executor"]) for r in runs] == [
            (name, "completed", "local")]
        tags = {t["tag"]: t["count"] for t in store.metric_tags(runs[0]["id"])}
        for tag, count in counts.items():
            assert tags.get(tag) == count, tags
        assert len(store.list_checkpoints(runs[0]["id"])) == checkpoints
    finally:
        store.close()
