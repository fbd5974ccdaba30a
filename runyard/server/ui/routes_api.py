"""The two reads the UI needs beyond the runs API: who am I, and the queue in claim order."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from runyard.models import Role
from runyard.server import auth, schemas, serialize
from runyard.server.auth import Principal
from runyard.server.state import ServerState, get_state

router = APIRouter(tags=["ui"])

#: Most queued runs one ``GET /v1/queue`` explains.
MAX_QUEUE = 500
#: Run columns the queue page shows.
_QUEUE_FIELDS = ("id", "name", "project", "status", "priority", "constraints", "owner",
                 "created_at", "queued_at", "attempt", "max_attempts", "blueprint")


def abilities(who: Principal) -> dict[str, bool]:
    """What the UI may offer this principal (the API enforces it again on every call)."""
    human = who.at_least(Role.VIEWER)
    return {
        "read": human,
        # Users stop and restart their own runs only: the UI compares ``run.owner``.
        "stop_own": who.at_least(Role.USER), "restart_own": who.at_least(Role.USER),
        "stop_any": who.is_operator, "restart_any": who.is_operator,
        "requeue": who.is_operator, "cancel": who.is_operator, "drain": who.is_operator,
        # Users delete their own local runs only: the UI compares ``owner`` and ``executor``.
        "delete_any": who.is_operator, "delete_own_local": who.role is Role.USER,
    }


@router.get("/v1/whoami", **schemas.doc(schemas.Whoami))
def whoami(who: Principal = Depends(auth.principal),
           state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """The caller's token name and role, and what that role may do (any valid token)."""
    return {"name": who.name, "role": who.role.value, "auth": state.auth.enabled,
            "can": abilities(who)}


@router.get("/v1/queue", **schemas.doc(schemas.QueuePage))
def queue(limit: int = Query(100, ge=1, le=MAX_QUEUE), explain: bool = True,
          who: Principal = Depends(auth.viewer),
          state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Queued runs in the order workers take them (priority, then age), each with why it is
    not running yet (the same answer as ``GET /v1/runs/{id}/explain``)."""
    rows = state.store.queued_runs(limit=limit)
    total = state.store.count_runs_by_status().get("queued", 0)
    items = []
    for position, row in enumerate(rows, start=1):
        run = serialize.run_out({k: row.get(k) for k in _QUEUE_FIELDS})
        item: dict[str, Any] = {"position": position, "run": run}
        if explain:
            item["explain"] = state.queue.explain(row["id"])
        items.append(item)
    return {"items": items, "total": total, "next_after_id": None}
