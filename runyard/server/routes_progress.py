"""A run's progress history: ``GET /v1/runs/{id}/progress/history`` (docs/http-api.md,
"Progress"), keyset pages of whole snapshots or a downsampled series for a chart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from runyard import errors, models
from runyard.server import auth
from runyard.server.auth import Principal
from runyard.server.progress import history_out
from runyard.server.state import ServerState, get_state
from runyard.store.progress_history import MAX_PAGE, MAX_POINTS

router = APIRouter(tags=["runs"])


@router.get("/v1/runs/{run_id}/progress/history")
def progress_history(
    run_id: str,
    attempt: int | None = Query(None, ge=1, le=models.INT32_MAX),
    after_id: int | None = Query(None, ge=0, le=models.INT64_MAX),
    limit: int | None = Query(None, ge=1, le=MAX_PAGE,
                              description="keyset page size (default 100)"),
    points: int | None = Query(None, ge=1, le=MAX_POINTS,
                               description="downsample to at most this many entries"),
    who: Principal = Depends(auth.viewer),
    state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    """Snapshots oldest first. Without ``points``: keyset pages (``after_id``, ``limit``),
    each entry with its whole ``snapshot``, ``next_after_id`` set when the page was full.
    With ``points``: at most that many entries standing for the history (each the newest of
    its bucket, ``count`` snapshots; the first always kept), without the snapshots."""
    state.run_or_404(run_id)
    if points is not None:
        if limit is not None:
            raise errors.ValidationError("limit: not with points (a downsampled history is "
                                         "one answer)", field="limit")
        rows, total = state.store.progress_series(run_id, points=points, attempt=attempt,
                                                  after_id=after_id)
        return {"items": history_out(rows, full=False), "total": total,
                "next_after_id": None}
    size = limit or 100
    rows = state.store.list_progress(run_id, attempt=attempt, after_id=after_id, limit=size)
    nxt = rows[-1]["id"] if len(rows) == size else None
    return {"items": history_out(rows, full=True), "next_after_id": nxt}
