"""The server side of ``runyard sync``: create an ended local run from its record, once.

A synced run keeps the id it had locally, so a second upload finds it and changes nothing.
It arrives ended (a record of something that happened elsewhere), with its attempts, its
events in their original sequence and its latest progress; an ``imported`` event is added
after them saying who uploaded it and from where. Metric points follow in batches through
``POST /v1/runs/{id}/import/metrics`` (upserts, so a resent batch duplicates nothing).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from runyard import archiving, errors, models, submission
from runyard.queue import Queue
from runyard.store.base import Row

#: What a synced run may say it ended as.
ENDED = ("completed", "failed", "stopped", "cancelled")
#: The ``source`` column of synced runs starts with this; only they take imported points.
SOURCE_PREFIX = "sync:"


def _time(value: Any, field: str, default: float | None = None) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ValidationError(f"{field}: expected UNIX seconds", field=field)
    return float(value)


def _text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.ValidationError(f"{field}: expected text of at most {limit} characters",
                                     field=field)
    return value


def _int(value: Any, field: str) -> int | None:
    """An integer a column holds, or None (absent, or not an integer: as recorded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if not models.INT32_MIN <= value <= models.INT32_MAX:
        raise errors.ValidationError(f"{field}: must fit in 32 bits", field=field)
    return value


def import_run(queue: Queue, record: Mapping[str, Any], *, owner: str,
               origin: str) -> tuple[Row, bool]:
    """Create the run of ``record`` unless its id exists; returns ``(run, created)``. This
    module reads and checks the record; the run is created through
    :meth:`runyard.queue.Queue.record_ended`, as every run is, by the lifecycle."""
    src = dict(record.get("run") or {})
    run_id = src.get("id")
    if not isinstance(run_id, str) or not 1 <= len(run_id) <= 40 or not run_id.isalnum():
        raise errors.ValidationError("run.id: expected 1-40 letters and digits", field="run.id")
    status = src.get("status")
    if status not in ENDED:
        raise errors.ValidationError(
            f"run.status: only ended runs are synced ({', '.join(ENDED)}), got {status!r}",
            field="run.status")
    now = time.time()
    request = {k: src[k] for k in ("name", "project", "version", "notes", "config", "workdir")
               if src.get(k) is not None}
    request["executor"] = "local"
    try:
        row = submission.build_run(request, None, owner=owner, now=now)
    except errors.ValidationError as exc:
        field = f"run.{exc.field or 'body'}"
        raise errors.ValidationError(f"run.{exc.message}", field=field) from None
    created_at = _time(src.get("created_at"), "run.created_at", now)
    attempts = list(record.get("attempts") or [])
    row.update(
        id=run_id, status=status, source=f"{SOURCE_PREFIX}{origin}"[:500],
        created_at=created_at, queued_at=created_at,
        started_at=_time(src.get("started_at"), "run.started_at"),
        ended_at=_time(src.get("ended_at"), "run.ended_at", now),
        updated_at=now, host_id=_text(src.get("host_id"), "run.host_id", 200),
        termination_reason=_reason(src.get("termination_reason"), "run.termination_reason"),
        exit_code=_int(src.get("exit_code"), "run.exit_code"),
        attempt=len(attempts), progress=src.get("progress") if isinstance(
            src.get("progress"), dict) else None,
        progress_updated_at=_time(src.get("progress_updated_at"), "run.progress_updated_at"),
        artifact_store=archiving.check_location(src.get("artifact_store"),
                                              "run.artifact_store"))
    rows = []
    for i, att in enumerate(attempts):
        number = att.get("number", i + 1)
        if _int(number, f"attempts[{i}].number") is None or number < 1:
            raise errors.ValidationError(f"attempts[{i}].number: expected >= 1",
                                         field=f"attempts[{i}].number")
        claimed = _time(att.get("claimed_at"), f"attempts[{i}].claimed_at", created_at)
        rows.append({
            "id": submission.new_id(), "run_id": run_id, "number": number,
            "host_id": _text(att.get("host_id"), f"attempts[{i}].host_id", 200)
            or row["host_id"] or "local",
            "lease": secrets.token_hex(16), "lease_expires_at": claimed, "active": False,
            "claimed_at": claimed,
            "running_at": _time(att.get("running_at"), f"attempts[{i}].running_at"),
            "ended_at": _time(att.get("ended_at"), f"attempts[{i}].ended_at", now),
            "termination_reason": _reason(att.get("termination_reason"),
                                          f"attempts[{i}].termination_reason"),
            "exit_code": _int(att.get("exit_code"), f"attempts[{i}].exit_code"),
            "details": att.get("details") if isinstance(att.get("details"), dict) else None,
            "workdir": archiving.check_location(att.get("workdir"), f"attempts[{i}].workdir"),
        })
    events = [{
        "attempt": _int(ev.get("attempt"), f"events[{i}].attempt") or 0,
        "at": _time(ev.get("at"), f"events[{i}].at", now),
        "kind": (_text(ev.get("kind"), f"events[{i}].kind", 10_000) or "status")[:32],
        "status": models.Status.parse(
            _text(ev.get("status"), f"events[{i}].status", 100) or status,
            f"events[{i}].status").value,
        "actor": (_text(ev.get("actor"), f"events[{i}].actor", 10_000) or "local")[:200],
        "details": ev.get("details") if isinstance(ev.get("details"), dict) else None,
    } for i, ev in enumerate(record.get("events") or [])]
    return queue.record_ended(row, rows, events, actor=owner, origin=origin)


def _reason(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return models.Reason.parse(_text(value, field, 100) or "", field).value


def check_importable(run: Row) -> None:
    """Synced runs, and ended local runs, take imported points and checkpoints; others need a
    lease. (A local run whose lease lapsed while the server was away ends ``lost``; its
    process then delivers the points it spooled through here, so none is lost.)"""
    if str(run.get("source") or "").startswith(SOURCE_PREFIX):
        return
    if run.get("executor") == "local" and run.get("status") in ENDED:
        return
    raise errors.Conflict(f"run {run['id']} is {run.get('status')}: send its data with a lease")
