"""Channels and the delivery log: ``/v1/channels`` and ``/v1/notifications``
(docs/notifications.md).

Who sees what, on a server a whole lab shares: only operators create, delete or test a
channel, so only they choose where the server sends requests; nobody reads a channel's URL
or secret back (the listing shows a redacted URL). Everyone who reads runs may list channel
names (rules name them) and the deliveries of runs that exist; deliveries of no run (tests)
or of deleted runs are the operators'.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response

from runyard import errors
from runyard.notifications import channels
from runyard.server import auth, serialize
from runyard.server.auth import Principal
from runyard.server.bodies import ChannelRequest
from runyard.server.state import ServerState, get_state
from runyard.store.base import Row
from runyard.store.notifications import STATUSES

router = APIRouter(tags=["notifications"])

#: Most delivery-log rows one request answers.
MAX_LIMIT = 500


@router.post("/v1/channels", status_code=201)
def put_channel(body: ChannelRequest, who: Principal = Depends(auth.operator),
                state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Create or replace a channel (operators). The URL and secret are never shown back."""
    ch = channels.check_channel(body.model_dump())
    row, _ = state.store.put_channel(ch.name, ch.kind, ch.url, ch.secret, "api")
    return channels.channel_out(row)


@router.get("/v1/channels")
def list_channels(who: Principal = Depends(auth.viewer),
                  state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Channel names and kinds, URLs redacted, secrets never."""
    return {"items": [channels.channel_out(r) for r in state.store.list_channels()],
            "next_after_id": None}


@router.delete("/v1/channels/{name}", status_code=204)
def delete_channel(name: str, who: Principal = Depends(auth.operator),
                   state: ServerState = Depends(get_state)) -> Response:
    """Remove a channel; its pending deliveries fail when they come due."""
    if not state.store.delete_channel(name):
        raise errors.NotFound(f"no channel named {name!r}")
    return Response(status_code=204)


@router.post("/v1/channels/{name}/test", status_code=202)
def test_channel(name: str, who: Principal = Depends(auth.operator),
                 state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Queue a test notification through the outbox; follow it in the delivery log."""
    if state.store.get_channel(name) is None:
        raise errors.NotFound(f"no channel named {name!r}")
    delivery = state.deliverer.enqueue(
        channel=name, run_id=None, kind="test",
        payload={"message": f"test notification for channel {name}, sent by {who.name}"})
    return {"delivery": delivery, "channel": name,
            "log": f"/v1/notifications?channel={quote(name, safe='')}"}


def notification_out(row: Row) -> dict[str, Any]:
    """One delivery as the log shows it."""
    return {
        "id": row["id"], "channel": row["channel"], "run_id": row.get("run_id"),
        "kind": row["kind"], "status": row["status"], "attempts": row["attempts"],
        "last_error": row.get("last_error"),
        "next_attempt_at": serialize.iso(row.get("next_attempt_at"))
        if row["status"] == "pending" else None,
        "created_at": serialize.iso(row["created_at"]),
        "updated_at": serialize.iso(row.get("updated_at")),
        "delivered_at": serialize.iso(row.get("delivered_at")),
        "payload": serialize.json_safe(row.get("payload")),
    }


@router.get("/v1/notifications")
def list_notifications(
    run_id: str | None = Query(None, description="only this run's deliveries"),
    channel: str | None = Query(None, description="only this channel's"),
    status: str | None = Query(None, description="pending, delivered or failed"),
    before_id: int | None = Query(None, ge=1, description="page on: ids below this one"),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    who: Principal = Depends(auth.viewer), state: ServerState = Depends(get_state),
) -> dict[str, Any]:
    """The delivery log, newest first: status, attempts, last error and times."""
    if status is not None and status not in STATUSES:
        raise errors.ValidationError(
            f"status: expected one of {', '.join(STATUSES)}, got {status!r}", field="status")
    found = state.store.list_notifications(
        run_id=run_id, channel=channel, status=status, before_id=before_id, limit=limit,
        existing_runs_only=not who.is_operator)
    more = len(found) == limit
    return {"items": [notification_out(r) for r in found],
            "next_before_id": found[-1]["id"] if found and more else None}
