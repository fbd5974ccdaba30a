"""The agent's probe of Kubeflow's progression file (``TRAINJOB_PROGRESSION_FILE_PATH``):
read on the probe's ticks like the v1 snapshot, with the same warnings for a bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runyard.agent import probe

from .test_progress_kubeflow import PROGRESSION


def _write(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.replace(tmp, path)


def test_the_probe_reads_the_progression_file_like_the_v1_snapshot(tmp_path: Path) -> None:
    kf = tmp_path / "training_progression.json"
    p = probe.Probe(tmp_path / "progress.json", tmp_path / "metrics.jsonl",
                    missing_grace_s=0.0, progression_file=kf)
    first = p.read()
    assert first.progress is not None  # only the v1 file is reported missing, not Kubeflow's
    assert [w.split(":")[0] for w in first.progress["warnings"]] == [
        "progress file was never written"]
    _write(kf, {**PROGRESSION, "training_metrics": {"loss": "0.75", "ckpt": "/c"}})
    got = p.read()
    assert got.progress is not None and got.progress["snapshot"]["step"] == 250
    assert got.progress["warnings"] == [
        "progression file training_metrics: metric 'ckpt' has the value '/c', which is not "
        "a number; left out"]
    assert got.metric_batches == [[[250, 1_700_000_100.0, {"loss": 0.7, "eval_accuracy": 0.61}]]]
    assert p.read().progress is None  # unchanged: nothing to send
    for bad, kind in (("{not json", "corrupt"), ('{"current_step": 3', "partial"),
                      ('{"current_step": "three"}', "invalid")):
        _write(kf, bad)
        got = p.read()
        assert got.progress is not None and got.progress["snapshot"] is None
        assert got.progress["warnings"][0].startswith(f"progression file {kind}: ")
        assert p.read().progress is None  # once per kind
    _write(kf, {**PROGRESSION, "current_step": 500})
    got = p.read(final=True)
    assert got.progress is not None and got.progress["snapshot"]["step"] == 500
    assert got.progress["warnings"] == []  # the v1 file's absence was told once


def test_a_v1_snapshot_goes_first_and_the_progression_one_on_the_next_read(
        tmp_path: Path) -> None:
    kf, v1 = tmp_path / "kf.json", tmp_path / "progress.json"
    p = probe.Probe(v1, tmp_path / "metrics.jsonl", progression_file=kf)
    _write(v1, {"schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00Z",
                "step": 3})
    _write(kf, {"current_step": 4})
    assert p.read().progress["snapshot"]["step"] == 3  # type: ignore[index]
    assert p.read().progress["snapshot"]["step"] == 4  # type: ignore[index]
    assert p.read().progress is None
