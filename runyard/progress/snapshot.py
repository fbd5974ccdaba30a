"""The progress snapshot of ``runyard.progress/v1``: encode, validate, write atomically.

A snapshot is a JSON object replaced as a whole on every write (docs/progress-protocol.md). Readers
must never see half of one, so :func:`write_snapshot` writes a temporary file in the same
directory and renames it over the target with :func:`os.replace`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from runyard import defaults, errors, nonfinite

SCHEMA_ID = "runyard.progress/v1"
SCHEMA_RESOURCE = "progress-v1.schema.json"

def encode_snapshot(snapshot: Mapping[str, Any]) -> bytes:
    """Serialise a snapshot to UTF-8 JSON with non-finite floats spelled as strings.

    Raises :class:`errors.ValidationError` when the result breaks the bounds (too many
    metrics, a metric name too long, more than ``SNAPSHOT_MAX_BYTES``).
    """
    problems = check_bounds(snapshot)
    data = json.dumps(nonfinite.to_wire(snapshot), separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False, default=str).encode()
    if len(data) > defaults.SNAPSHOT_MAX_BYTES:
        problems.append(
            f"snapshot: {len(data)} bytes exceeds {defaults.SNAPSHOT_MAX_BYTES} bytes"
        )
    if problems:
        raise errors.ValidationError("; ".join(problems), field="snapshot")
    return data


def write_snapshot(path: str | os.PathLike[str], snapshot: Mapping[str, Any], *,
                   fsync: bool = False) -> int:
    """Encode ``snapshot`` and replace ``path`` with it atomically; returns the bytes written.

    Raises :class:`errors.ValidationError` when the snapshot breaks the bounds.
    """
    return write_bytes_atomic(path, encode_snapshot(snapshot), fsync=fsync)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, fsync: bool = False) -> int:
    """Replace ``path`` with ``obj`` as JSON (non-finite floats as strings), atomically."""
    data = json.dumps(nonfinite.to_wire(obj), indent=2, allow_nan=False, ensure_ascii=False,
                      default=str).encode()
    return write_bytes_atomic(path, data, fsync=fsync)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *,
                       fsync: bool = False) -> int:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never half.

    ``fsync`` makes the content durable before the rename (slower; only matters on power
    loss). The temporary file lives in the same directory so the rename never crosses a
    file system, which is what makes it atomic.
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix=".runyard-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return len(data)


def check_bounds(snapshot: Mapping[str, Any]) -> list[str]:
    """Problems with the size bounds of docs/progress-protocol.md (not the schema)."""
    problems: list[str] = []
    metrics = snapshot.get("metrics")
    if isinstance(metrics, Mapping):
        if len(metrics) > defaults.SNAPSHOT_MAX_METRICS:
            problems.append(
                f"metrics: {len(metrics)} metrics exceeds {defaults.SNAPSHOT_MAX_METRICS}"
            )
        for name in metrics:
            if len(str(name)) > defaults.METRIC_NAME_MAX:
                problems.append(
                    f"metrics.{str(name)[:80]}: name longer than "
                    f"{defaults.METRIC_NAME_MAX} characters"
                )
                break
    return problems


#: Longest ``message`` and ``phase``/units strings, as in the schema.
MESSAGE_MAX = 4096
LABEL_MAX = 64


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A number as the wire spells it: a JSON number or ``"NaN"``/``"Infinity"``."""
    return _is_real(v) or (isinstance(v, str) and v in nonfinite.SPECIALS)


def _label_problem(where: str, v: Any, *, optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        return f"{where}: expected a string, got {type(v).__name__}"
    if len(v) > LABEL_MAX:
        return f"{where}: longer than {LABEL_MAX} characters"
    return None


def _field_problem(key: str, v: Any) -> str | None:
    """Why ``v`` is not a valid value of the known field ``key``, or None."""
    if key in ("schema", "updated_at", "status"):
        ok = isinstance(v, str)
    elif key == "message":
        if isinstance(v, str) and len(v) > MESSAGE_MAX:
            return f"message: longer than {MESSAGE_MAX} characters"
        ok = v is None or isinstance(v, str)
    elif key == "phase":
        if isinstance(v, str) and not v:
            return "phase: expected a non-empty string"
        return _label_problem("phase", v, optional=False)
    elif key in ("seq", "step"):
        ok = _is_int(v) and v >= 0
    elif key == "total_steps":
        ok = v is None or (_is_int(v) and v >= 0)
    elif key in ("epoch", "total_epochs", "percent", "eta_seconds"):
        ok = v is None or (_is_real(v) and v >= 0)
    elif key == "metrics":
        if v is None:
            return None
        if not isinstance(v, Mapping):
            return "metrics: expected an object of name -> number"
        for name, x in v.items():
            # Exact types (bool is an int subclass): the fast path for up to 256 metrics.
            kind = type(x)
            if not (kind is float or kind is int or (kind is str and x in nonfinite.SPECIALS)):
                return f"metrics.{str(name)[:80]}: expected a number"
        return None
    elif key == "rate":
        if v is None:
            return None
        if not isinstance(v, Mapping) or not _is_number(v.get("value")):
            return "rate: expected an object with a number value"
        return _label_problem("rate.units", v.get("units"))
    elif key == "operations":
        if not isinstance(v, list):
            return "operations: expected a list"
        for i, op in enumerate(v):
            if not isinstance(op, Mapping):
                return f"operations.{i}: expected an object"
            problem = (_label_problem(f"operations.{i}.operation", op.get("operation"),
                                      optional=False)
                       or _label_problem(f"operations.{i}.units", op.get("units")))
            if problem:
                return problem
            for name in ("value", "final_value"):
                x = op.get(name)
                if name in op and not (_is_number(x) or (x is None and name == "final_value")):
                    return f"operations.{i}.{name}: expected a number"
        return None
    else:
        return None
    return None if ok else f"{key}: {type(v).__name__} {str(v)[:40]!r} is not of its type"


def check_types(snapshot: Mapping[str, Any]) -> list[str]:
    """Problems with the types of the snapshot's known fields (docs/progress-protocol.md).

    The schema's types without its required keys and patterns: cheap enough for the server to
    run on every snapshot it is sent, so that what viewers are shown has the expected shape
    (a ``message`` is a string, never an object). Unknown keys are not looked at.
    """
    problems = []
    for key, value in snapshot.items():
        problem = _field_problem(key, value)
        if problem:
            problems.append(problem)
    return problems


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``runyard.progress/v1`` shipped inside the package."""
    text = resources.files("runyard.progress").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Any:
    # jsonschema is imported here, not at module level, so that writing snapshots (the SDK's
    # hot path) never pays for it.
    import jsonschema

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_snapshot(obj: Any) -> list[str]:
    """Every problem with ``obj`` as a v1 snapshot (schema and bounds); empty when valid.

    Each problem names the field, e.g. ``"step: -1 is less than the minimum of 0"``.
    """
    if not isinstance(obj, Mapping):
        return [f"snapshot: expected a JSON object, got {type(obj).__name__}"]
    problems: list[str] = []
    for err in sorted(_validator().iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path) or "snapshot"
        problems.append(f"{where}: {err.message}")
    # The metric count and name bounds are in the schema itself; only the size is not.
    try:
        size = len(json.dumps(nonfinite.to_wire(obj), separators=(",", ":"), ensure_ascii=False,
                              default=str).encode())
    except (TypeError, ValueError) as exc:
        problems.append(f"snapshot: not serialisable as JSON ({exc})")
    else:
        if size > defaults.SNAPSHOT_MAX_BYTES:
            problems.append(f"snapshot: {size} bytes exceeds {defaults.SNAPSHOT_MAX_BYTES} bytes")
    return problems
