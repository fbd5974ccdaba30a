"""Kubeflow Trainer's progress tracking (KEP-2779) in Runyard's terms
(docs/progress-protocol.md, "Code written for Kubeflow Trainer").

Training code instrumented for Kubeflow Trainer reports in one of two forms, and both become
a ``runyard.progress/v1`` snapshot plus metric points, so a run reports to Runyard unedited:

* the **push form**: ``POST`` of ``{"trainerStatus": {"progressPercentage",
  "estimatedRemainingSeconds", "metrics": [{"name", "value"}], "lastUpdatedTime"}}`` to
  ``KUBEFLOW_TRAINER_STATUS_URL`` (:func:`from_trainer_status`, used by the server);
* the **file form**: the JSON file at ``TRAINJOB_PROGRESSION_FILE_PATH`` that the TrainJob
  progression callbacks write (:func:`from_progression_file`, read by the agent's probe).

Metric values come as strings (``"0.2347"``); one that is not a number is left out with a
problem text for a warning event, never an error. Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, errors, nonfinite, timestamps
from runyard.progress.snapshot import MESSAGE_MAX, SCHEMA_ID

#: The variables the agent gives a run (the names Kubeflow Trainer's runtime injects).
STATUS_URL_ENV = "KUBEFLOW_TRAINER_STATUS_URL"
STATUS_TOKEN_ENV = "KUBEFLOW_TRAINER_STATUS_TOKEN"
STATUS_CA_ENV = "KUBEFLOW_TRAINER_STATUS_CA_CERT"
PROGRESSION_FILE_ENV = "TRAINJOB_PROGRESSION_FILE_PATH"

#: ``source`` of the snapshots made here (an unknown key of v1, kept as is).
STATUS_SOURCE = "kubeflow/trainerStatus"
FILE_SOURCE = "kubeflow/progression-file"

#: trainerStatus metrics read as progress fields rather than metric tags.
EPOCH_METRIC, TOTAL_EPOCHS_METRIC = "currentEpoch", "totalEpochs"
STEP_METRIC, TOTAL_STEPS_METRIC = "currentStep", "totalSteps"
PROGRESS_METRICS = frozenset({EPOCH_METRIC, TOTAL_EPOCHS_METRIC, STEP_METRIC,
                              TOTAL_STEPS_METRIC})
#: The step scale of a run that reports only a percentage: step = percent, of 100.
PERCENT_STEPS = 100

#: A number as text: decimal or exponent notation, or what Python's ``str()`` writes for
#: NaN and the infinities (``nan``, ``inf``, ``-inf``), as trainers write ``str(loss)``.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
                     r"|[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
#: Longest value text quoted in a warning.
QUOTE_MAX = 80
#: Times are taken from 1970 to the end of year 9999 (what an ISO 8601 time can say).
TIME_MAX = 253402300799.0


def parse_time(value: Any, field: str) -> float | None:
    """A report's time (ISO 8601 or UNIX seconds; None or "" -> None) as UNIX seconds; a
    :class:`errors.ValidationError` naming ``field`` for anything else or out of range."""
    if isinstance(value, bool):
        raise errors.ValidationError(f"{field}: expected a time, got {value!r}", field=field)
    seconds = timestamps.parse_time(value, field)
    if seconds is not None and not 0 <= seconds <= TIME_MAX:
        raise errors.ValidationError(f"{field}: {_quote(value)} is not a time between 1970 "
                                     "and 9999", field=field)
    return seconds


def metric_value(value: Any) -> float | None:
    """A Kubeflow metric value (a string as the KEP has it, or a JSON number) as a float, NaN
    and the infinities included; None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            return None
    if isinstance(value, str):
        text = value.strip()
        if text in nonfinite.SPECIALS:
            return nonfinite.SPECIALS[text]
        if _NUMBER.fullmatch(text):
            return float(text)
    return None


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:QUOTE_MAX] + ("..." if len(text) > QUOTE_MAX else ""))


@dataclass
class Mapped:
    """What one Kubeflow report becomes: a v1 ``snapshot``, the metric ``points`` (tag ->
    wire value) logged at ``step`` and time ``at`` (UNIX seconds), and ``problems`` (metric
    name -> warning text) for the values left out."""

    snapshot: dict[str, Any]
    step: int | None = None
    at: float = 0.0
    points: dict[str, Any] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[list[Any]]:
        """The points as rows of ``POST /v1/runs/{id}/metrics`` (``[step, at, {tag:
        value}]``): none without a step, since a point needs one."""
        if self.step is None or not self.points:
            return []
        return [[self.step, self.at, dict(self.points)]]


def _count(value: float | None) -> int | None:
    """A whole, non-negative step count that a column holds, or None."""
    if value is None or not math.isfinite(value) or value < 0 or value != int(value) \
            or value > defaults.METRIC_STEP_MAX:
        return None
    return int(value)


def _amount(value: float | None) -> float | None:
    """A finite, non-negative amount (an epoch), or None."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def _add_metric(out: Mapped, where: str, name: Any, value: Any) -> None:
    """One metric into ``out``: a point and a snapshot value, or a problem."""
    if not isinstance(name, str) or not name:
        out.problems[str(name)] = f"{where}: a metric without a name is left out"
        return
    if len(name) > defaults.METRIC_NAME_MAX:
        out.problems[name] = (f"{where}: metric name {name[:QUOTE_MAX]!r} is longer than "
                              f"{defaults.METRIC_NAME_MAX} characters; left out")
        return
    number = metric_value(value)
    if number is None:
        out.problems[name] = (f"{where}: metric {name!r} has the value {_quote(value)}, "
                              "which is not a number; left out")
        out.points.pop(name, None)
        return
    out.points[name] = nonfinite.encode(number)


def _progress_metric(out: Mapped, where: str, name: str, value: Any) -> float | None:
    """The number a progress metric (``currentEpoch``...) holds, or None with a problem."""
    number = metric_value(value)
    kind = _count if name in (STEP_METRIC, TOTAL_STEPS_METRIC) else _amount
    if kind(number) is None:
        what = "a whole number >= 0" if kind is _count else "a number >= 0"
        out.problems[name] = (f"{where}: metric {name!r} has the value {_quote(value)}, "
                              f"which is not {what}; left out")
        return None
    return number


def _snapshot(source: str, at: float) -> dict[str, Any]:
    return {"schema": SCHEMA_ID, "updated_at": timestamps.format_time(at), "source": source}


def from_trainer_status(status: Mapping[str, Any], *, now: float,
                        prior: Mapping[str, Any] | None = None) -> Mapped:
    """The push form's ``trainerStatus`` (its types already checked) as a v1 snapshot.

    ``progressPercentage`` -> ``percent``; ``estimatedRemainingSeconds`` -> ``eta_seconds``;
    the metrics ``currentEpoch``/``totalEpochs`` -> ``epoch``/``total_epochs`` and
    ``currentStep``/``totalSteps`` -> ``step``/``total_steps``; every other metric -> a
    metric tag (and the snapshot's ``metrics``). Without ``currentStep``, the step is the one
    ``prior`` (the run's snapshot of the same attempt) holds when it came from the run's own
    v1 reports, else the percentage on a scale of :data:`PERCENT_STEPS`, so that stall
    detection and the step-rate ETA see the run move.
    """
    at = parse_time(status.get("lastUpdatedTime"), "trainerStatus.lastUpdatedTime")
    at = now if at is None else at
    out = Mapped(snapshot=_snapshot(STATUS_SOURCE, at), at=at)
    snap = out.snapshot
    percent = status.get("progressPercentage")
    if percent is not None:
        snap["percent"] = float(percent)
    eta = status.get("estimatedRemainingSeconds")
    if eta is not None:
        snap["eta_seconds"] = float(eta)
    progress: dict[str, float] = {}
    for i, metric in enumerate(status.get("metrics") or ()):
        where = f"trainerStatus.metrics[{i}]"
        name, value = metric.get("name"), metric.get("value")
        if name in PROGRESS_METRICS:
            number = _progress_metric(out, where, name, value)
            if number is not None:
                progress[name] = number
        else:
            _add_metric(out, where, name, value)
    if EPOCH_METRIC in progress:
        snap["epoch"] = progress[EPOCH_METRIC]
    if TOTAL_EPOCHS_METRIC in progress:
        snap["total_epochs"] = progress[TOTAL_EPOCHS_METRIC]
    step = _count(progress.get(STEP_METRIC))
    total = _count(progress.get(TOTAL_STEPS_METRIC))
    own = prior if prior is not None and prior.get("source") != STATUS_SOURCE else None
    if step is None and own is not None and _count_of(own.get("step")) is not None:
        step = _count_of(own.get("step"))
        total = total if total is not None else _count_of(own.get("total_steps"))
    elif step is None and percent is not None:
        step = min(int(math.floor(float(percent))), PERCENT_STEPS)
        total = PERCENT_STEPS
    if step is not None:
        snap["step"] = step
        out.step = step
    if total is not None:
        snap["total_steps"] = total
    if out.points:
        snap["metrics"] = dict(out.points)
    return out


def _count_of(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return _count(float(value))


def _file_number(doc: Mapping[str, Any], key: str, whole: bool) -> float | None:
    """A number field of the progression file, or None when absent; ValueError naming the
    field when it is something else."""
    value = doc.get(key)
    if value is None:
        return None
    number = None if isinstance(value, bool | str) else metric_value(value)
    checked = _count(number) if whole else _amount(number)
    if checked is None:
        what = "a whole number >= 0" if whole else "a number >= 0"
        raise ValueError(f"{key}: expected {what}, got {_quote(value)}")
    return checked


def _file_time(doc: Mapping[str, Any], key: str) -> float | None:
    try:
        return parse_time(doc.get(key), key)
    except errors.ValidationError:
        raise ValueError(f"{key}: expected UNIX seconds or an ISO 8601 time from 1970 to "
                         f"9999, got {_quote(doc.get(key))}") from None


def from_progression_file(doc: Any, *, now: float) -> Mapped:
    """The file form (``TRAINJOB_PROGRESSION_FILE_PATH``) as a v1 snapshot; ValueError, its
    text naming the field, for a document that is not one.

    ``current_step``/``total_steps`` -> ``step``/``total_steps``; ``current_epoch``/
    ``total_epochs`` -> ``epoch``/``total_epochs``; ``message`` -> ``message``;
    ``timestamp`` -> ``updated_at`` (and the points' time); with ``start_time``, the ETA
    (time per step so far times the steps left) -> ``eta_seconds``; ``training_metrics``
    and ``metrics`` (values as strings, ``metrics`` winning a name both hold) -> metric tags
    at ``current_step``. Unknown keys are ignored, as Kubeflow's own reader does.
    """
    if not isinstance(doc, Mapping):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    step = _file_number(doc, "current_step", whole=True)
    total = _file_number(doc, "total_steps", whole=True)
    epoch = _file_number(doc, "current_epoch", whole=False)
    total_epochs = _file_number(doc, "total_epochs", whole=False)
    stamp = _file_time(doc, "timestamp")
    start = _file_time(doc, "start_time")
    message = doc.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"message: expected a string, got {type(message).__name__}")
    groups = []
    for key in ("training_metrics", "metrics"):
        group = doc.get(key)
        if group is not None and not isinstance(group, Mapping):
            raise ValueError(f"{key}: expected an object of name -> value, got "
                             f"{type(group).__name__}")
        groups.append((key, group or {}))
    if sum(len(g) for _, g in groups) > 2 * defaults.SNAPSHOT_MAX_METRICS:
        raise ValueError(f"metrics: more than {defaults.SNAPSHOT_MAX_METRICS} metrics")
    at = now if stamp is None else stamp
    out = Mapped(snapshot=_snapshot(FILE_SOURCE, at), at=at)
    snap = out.snapshot
    for key, group in groups:
        for name, value in group.items():
            _add_metric(out, key, name, value)
    if len(out.points) > defaults.SNAPSHOT_MAX_METRICS:
        raise ValueError(f"metrics: {len(out.points)} metrics exceeds "
                         f"{defaults.SNAPSHOT_MAX_METRICS}")
    if step is not None:
        out.step = snap["step"] = int(step)
    if total is not None:
        snap["total_steps"] = int(total)
    if epoch is not None:
        snap["epoch"] = epoch
    if total_epochs is not None:
        snap["total_epochs"] = total_epochs
    if message:
        snap["message"] = message[:MESSAGE_MAX]
    if step and total is not None and stamp is not None and start is not None \
            and stamp >= start:
        snap["eta_seconds"] = round(max(total - step, 0) * (stamp - start) / step, 3)
    if out.points:
        snap["metrics"] = dict(out.points)
    return out
