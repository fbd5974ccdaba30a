"""Kubeflow Trainer's two progress forms mapped onto v1 (runyard.progress.kubeflow) and the
environment the agent gives a run for them."""

from __future__ import annotations

import math
import stat
from pathlib import Path
from typing import Any

import pytest

from runyard import errors, timestamps
from runyard.agent import trainer_status
from runyard.progress import kubeflow
from runyard.progress.snapshot import validate_snapshot

NOW = 1_800_000_000.0
KEP_STATUS = {  # the KEP's own example
    "progressPercentage": 45, "estimatedRemainingSeconds": 795649,
    "metrics": [{"name": "loss", "value": "0.2347"}, {"name": "eval_loss", "value": "0.2451"},
                {"name": "accuracy", "value": "0.9876"}, {"name": "currentEpoch", "value": "2"},
                {"name": "totalEpochs", "value": "5"}],
    "lastUpdatedTime": "2025-01-23T10:30:45Z"}


@pytest.mark.parametrize("value, want", [
    ("0.2347", 0.2347), (" 12 ", 12.0), ("-1e-3", -0.001), (".5", 0.5), ("3.", 3.0),
    (7, 7.0), (2.5, 2.5), ("NaN", math.nan), ("nan", math.nan), ("inf", math.inf),
    ("-Infinity", -math.inf), ("1e999", math.inf),
    ("abc", None), ("", None), ("1_000", None), ("0x10", None), ("1,5", None), (True, None),
    (None, None), ([1], None), (10**400, None)])
def test_metric_values_are_numbers_written_as_strings(value: Any, want: float | None) -> None:
    got = kubeflow.metric_value(value)
    if want is None or not math.isnan(want):
        assert got == want
    else:
        assert got is not None and math.isnan(got)


def test_the_kep_example_becomes_a_v1_snapshot_and_metric_points() -> None:
    got = kubeflow.from_trainer_status(KEP_STATUS, now=NOW)
    at = timestamps.parse_time("2025-01-23T10:30:45Z", "at")
    assert got.snapshot == {
        "schema": "runyard.progress/v1", "updated_at": "2025-01-23T10:30:45.000Z",
        "source": kubeflow.STATUS_SOURCE, "percent": 45.0, "eta_seconds": 795649.0,
        "epoch": 2.0, "total_epochs": 5.0, "step": 45, "total_steps": 100,
        "metrics": {"loss": 0.2347, "eval_loss": 0.2451, "accuracy": 0.9876}}
    assert validate_snapshot(got.snapshot) == []
    assert got.rows() == [[45, at, {"loss": 0.2347, "eval_loss": 0.2451, "accuracy": 0.9876}]]
    assert got.problems == {}


def test_trainer_steps_win_over_the_percentage_and_a_runs_own_steps_stand() -> None:
    status = {"progressPercentage": 12.7, "metrics": [
        {"name": "currentStep", "value": "300"}, {"name": "totalSteps", "value": "2000"}]}
    got = kubeflow.from_trainer_status(status, now=NOW)
    assert (got.snapshot["step"], got.snapshot["total_steps"]) == (300, 2000)
    assert "metrics" not in got.snapshot and got.rows() == []
    # The run's own v1 snapshot of this attempt had steps: they stand, with the percentage.
    own = {"schema": "runyard.progress/v1", "step": 1200, "total_steps": 5000}
    got = kubeflow.from_trainer_status({"progressPercentage": 24.5}, now=NOW, prior=own)
    assert (got.snapshot["step"], got.snapshot["total_steps"], got.snapshot["percent"]) == \
        (1200, 5000, 24.5)
    # A snapshot this mapping made earlier is not the run's own: the percentage goes on.
    mine = kubeflow.from_trainer_status({"progressPercentage": 10}, now=NOW).snapshot
    got = kubeflow.from_trainer_status({"progressPercentage": 99.9}, now=NOW, prior=mine)
    assert (got.snapshot["step"], got.snapshot["total_steps"]) == (99, 100)
    assert got.snapshot["updated_at"] == timestamps.format_time(NOW)  # no lastUpdatedTime


def test_values_that_are_not_numbers_are_problems_never_errors() -> None:
    status = {"metrics": [
        {"name": "loss", "value": "0.5"}, {"name": "ckpt", "value": "/ckpt/step-9"},
        {"name": "currentEpoch", "value": "-1"}, {"name": "totalSteps", "value": "1.5"},
        {"name": "grad", "value": "nan"}, {"name": "loss", "value": "0.25"}]}
    got = kubeflow.from_trainer_status(status, now=NOW)
    assert got.snapshot["metrics"] == {"loss": 0.25, "grad": "NaN"}
    assert "epoch" not in got.snapshot and "total_steps" not in got.snapshot
    assert got.step is None and got.rows() == []  # no step: the values are in the snapshot
    assert set(got.problems) == {"ckpt", "currentEpoch", "totalSteps"}
    assert "'/ckpt/step-9', which is not a number" in got.problems["ckpt"]
    assert got.problems["ckpt"].startswith("trainerStatus.metrics[1]: ")
    assert validate_snapshot(got.snapshot) == []


def test_trainer_status_times_are_checked() -> None:
    for bad in ("yesterday", "1e300", "-5"):
        with pytest.raises(errors.ValidationError) as caught:
            kubeflow.from_trainer_status({"lastUpdatedTime": bad}, now=NOW)
        assert caught.value.field == "trainerStatus.lastUpdatedTime"


PROGRESSION = {  # what the TrainJob progression callbacks write
    "current_step": 250, "total_steps": 1000, "current_epoch": 1, "total_epochs": 4,
    "message": "Training epoch 2/4, step 50/250", "timestamp": 1_700_000_100,
    "start_time": 1_700_000_000, "training_metrics": {"loss": "0.75", "learning_rate": "0.001",
                                                      "checkpoints_stored": 2},
    "metrics": {"eval_accuracy": "0.61", "loss": "0.7"}}


def test_the_progression_file_becomes_a_v1_snapshot_with_an_eta() -> None:
    got = kubeflow.from_progression_file(PROGRESSION, now=NOW)
    values = {"loss": 0.7, "learning_rate": 0.001, "checkpoints_stored": 2.0,
              "eval_accuracy": 0.61}
    assert got.snapshot == {
        "schema": "runyard.progress/v1", "updated_at": timestamps.format_time(1_700_000_100),
        "source": kubeflow.FILE_SOURCE, "step": 250, "total_steps": 1000, "epoch": 1,
        "total_epochs": 4, "message": "Training epoch 2/4, step 50/250",
        "eta_seconds": 300.0,  # 100 s for 250 steps, 750 left
        "metrics": values}
    assert validate_snapshot(got.snapshot) == []
    assert got.rows() == [[250, 1_700_000_100.0, values]]


def test_a_sparse_progression_file_and_its_problems() -> None:
    got = kubeflow.from_progression_file({"timestamp": "2026-01-01T00:00:00Z",
                                          "training_metrics": {"latest_checkpoint_path": "/x",
                                                               "t" * 65: "1"}}, now=NOW)
    assert got.snapshot == {"schema": "runyard.progress/v1",
                            "updated_at": "2026-01-01T00:00:00.000Z",
                            "source": kubeflow.FILE_SOURCE}
    assert set(got.problems) == {"latest_checkpoint_path", "t" * 65}
    assert got.rows() == []


@pytest.mark.parametrize("doc, field", [
    ([1], "expected a JSON object"), ({"current_step": -1}, "current_step"),
    ({"current_step": "5"}, "current_step"), ({"current_step": 2.5}, "current_step"),
    ({"total_steps": True}, "total_steps"), ({"current_epoch": "x"}, "current_epoch"),
    ({"timestamp": "soon"}, "timestamp"), ({"start_time": 1e300}, "start_time"),
    ({"message": {"a": 1}}, "message"), ({"metrics": ["loss"]}, "metrics"),
    ({"metrics": {f"m{i}": "1" for i in range(300)}}, "metrics")])
def test_a_progression_file_that_is_not_one_names_the_field(doc: Any, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        kubeflow.from_progression_file(doc, now=NOW)
    assert str(caught.value).startswith(field)


# ----------------------------------------------------------------------- the environment


def test_the_agent_gives_kubeflows_variables_and_a_private_token_file(tmp_path: Path) -> None:
    token_file, kf = tmp_path / "trainer-status-token", tmp_path / "training_progression.json"
    token_file.write_text("stale")  # replaced, never appended to or followed
    env = trainer_status.trainer_env(
        server="http://127.0.0.1:8080/", attempt_id="A1", token="rya_secret",
        token_file=token_file, progression_file=kf, environ={"SSL_CERT_FILE": "/ca.pem"})
    assert env == {
        "TRAINJOB_PROGRESSION_FILE_PATH": str(kf),
        "KUBEFLOW_TRAINER_STATUS_URL": "http://127.0.0.1:8080/v1/attempts/A1/trainer-status",
        "KUBEFLOW_TRAINER_STATUS_TOKEN": str(token_file)}  # no CA over plain HTTP
    assert token_file.read_text() == "rya_secret"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    ca = tmp_path / "ca.pem"
    env = trainer_status.trainer_env(
        server="https://runyard.lab:8443", attempt_id="A1", token="rya_secret",
        token_file=token_file, progression_file=kf, environ={"SSL_CERT_FILE": str(ca)})
    assert env["KUBEFLOW_TRAINER_STATUS_CA_CERT"] == str(ca.resolve())
    env = trainer_status.trainer_env(
        server="https://runyard.lab:8443", attempt_id="A1", token="rya_secret",
        token_file=token_file, progression_file=kf, environ={})
    assert "KUBEFLOW_TRAINER_STATUS_CA_CERT" not in env  # the agent trusts no CA file
    env = trainer_status.trainer_env(
        server="https://runyard.lab:8443", attempt_id="A1", token=None,
        token_file=tmp_path / "none", progression_file=kf)
    assert env == {"TRAINJOB_PROGRESSION_FILE_PATH": str(kf)}
    assert not (tmp_path / "none").exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    trainer_status.write_token_file(link, "rya_x")
    assert not link.is_symlink() and not (tmp_path / "target").exists()
    trainer_status.remove_token_file(token_file)
    assert not token_file.exists()
