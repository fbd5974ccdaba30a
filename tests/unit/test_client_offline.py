"""Client pieces that need no server: error mapping, parsing, SSE framing, query encoding.

The network is replaced with ``httpx.MockTransport`` (the seam the client exposes); the
server's answers here are the contract's shapes, written out by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from runyard import errors
from runyard.client import Client, Progress, Run
from runyard.client.http import encode_param
from runyard.client.sse import parse_events

RUN = {"id": "r1", "name": "mlp", "status": "running", "attempt": 1,
       "created_at": "2030-01-02T03:04:05.678Z", "progress_updated_at": None,
       "progress": {"schema": "runyard.progress/v1", "step": 50, "total_steps": 200,
                    "metrics": {"loss": "NaN", "acc": 0.5}, "eta_seconds": 12.5,
                    "stalled": True, "updated_at": "2030-01-02T03:04:06Z"},
       "attempts": [{"id": "a1", "number": 1, "host_id": "h", "active": True,
                     "claimed_at": "2030-01-02T03:04:05.000Z"}]}


def client_answering(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    return Client("http://runyard.test", "tok", transport=httpx.MockTransport(handler))


def error(status: int, type_: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"type": type_, "message": message,
                                                  "field": None, "errors": [], **extra}})


@pytest.mark.parametrize(("status", "type_", "cls"), [
    (404, "NotFound", errors.NotFound),
    (409, "IllegalTransition", errors.IllegalTransition),
    (409, "LeaseConflict", errors.LeaseConflict),
    (409, "Conflict", errors.Conflict),
    (401, "AuthError", errors.AuthError),
    (403, "Forbidden", errors.Forbidden),
    (413, "TooLarge", errors.TooLarge),
    (500, "RunyardError", errors.RunyardError),
    (503, "StoreError", errors.StoreError),
    (502, "NoSuchClass", errors.ServerError),
    (418, "NoSuchClass", errors.RunyardError),
])
def test_error_bodies_map_to_the_error_tree(status: int, type_: str,
                                            cls: type[errors.RunyardError]) -> None:
    client = client_answering(lambda req: error(status, type_, f"said {status}"))
    with pytest.raises(cls) as info:
        client.get_run("r1")
    assert type(info.value) is cls
    assert info.value.message == f"said {status}"
    assert info.value.details["http_status"] == status


def test_validation_error_keeps_field_and_every_error() -> None:
    items = [{"field": "config.lr", "message": "config.lr: -1 is not > 0"},
             {"field": "config.hidden", "message": "config.hidden: 'x' is not an integer"}]
    client = client_answering(lambda req: httpx.Response(422, json={"error": {
        "type": "ValidationError", "message": items[0]["message"], "field": "config.lr",
        "errors": items}}))
    with pytest.raises(errors.ValidationError) as info:
        client.create_run("x", blueprint="mlp", config={"lr": -1, "hidden": "x"})
    assert info.value.field == "config.lr"
    assert info.value.errors == items


def test_error_without_json_body_is_mapped_by_status() -> None:
    client = client_answering(lambda req: httpx.Response(502, text="Bad Gateway\nnginx"))
    with pytest.raises(errors.ServerError, match="HTTP 502 Bad Gateway: Bad Gateway"):
        client.health()
    client = client_answering(lambda req: httpx.Response(404, text=""))
    with pytest.raises(errors.NotFound, match="HTTP 404"):
        client.get_run("nope")


def test_connection_failure_is_a_transport_error_with_cause() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(errors.TransportError, match="cannot reach the server at "
                                                    "http://runyard.test") as info:
        client_answering(refuse).list_runs()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert not isinstance(info.value, errors.ServerError)


def test_non_json_success_body_is_a_server_error() -> None:
    client = client_answering(lambda req: httpx.Response(200, text="<html>"))
    with pytest.raises(errors.ServerError, match="not JSON"):
        client.get_run("r1")


def test_requests_carry_token_and_encoded_filters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [RUN], "next_after_id": "r1",
                                         "next_cursor": "c1"})

    page = client_answering(handler).list_runs(
        status=["queued", "running"], name_like="mlp%", fields=["name", "status"],
        created_after=datetime(2030, 1, 1, tzinfo=UTC), limit=5, tags=["a", "b"],
        labels={"pool": "x"}, sort=["project:asc", "created_at:desc"])
    q = seen[0].url.params
    assert seen[0].headers["Authorization"] == "Bearer tok"
    # Several values travel as the parameter repeated.
    assert q.get_list("status") == ["queued", "running"] and q["name_like"] == "mlp%"
    assert q.get_list("tag") == ["a", "b"] and q.get_list("label") == ["pool=x"]
    assert q.get_list("sort") == ["project:asc", "created_at:desc"]
    assert q["fields"] == "id,name,status"  # the id is always selected
    assert q["created_after"] == "2030-01-01T00:00:00.000Z"
    assert "project" not in q  # unset filters are not sent
    assert page.next == "c1" and [r.id for r in page] == ["r1"]  # the cursor


def test_no_token_sends_no_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    Client("http://x", transport=httpx.MockTransport(handler)).health()
    assert "Authorization" not in seen[0].headers
    monkeypatch.setenv("RUNYARD_TOKEN", "from-env")
    monkeypatch.setenv("RUNYARD_SERVER", "http://envhost:9")
    client = Client(transport=httpx.MockTransport(handler))
    client.health()
    assert client.server == "http://envhost:9"
    assert seen[1].headers["Authorization"] == "Bearer from-env"


def test_run_parsing_times_progress_and_attempts() -> None:
    run = Run.from_json(RUN)
    assert run.created_at == datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert run.progress is not None
    assert run.progress.fraction == 0.25 and run.progress.stalled
    assert math.isnan(run.progress.metrics["loss"] or 0.0) and run.progress.eta_seconds == 12.5
    assert run.attempts is not None and run.attempts[0].host_id == "h"
    with pytest.raises(errors.ValidationError, match="created_at"):
        Run.from_json({**RUN, "created_at": 1700000000.0})  # the contract says ISO strings


def test_progress_endpoint_shape_and_empty_snapshot() -> None:
    p = Progress.from_json({"snapshot": {"step": 3, "percent": 40.0}, "eta_seconds": None,
                            "stalled": False, "progress_updated_at": "2030-01-01T00:00:00Z"})
    assert p.step == 3 and p.fraction == 0.4 and p.has_snapshot
    empty = Progress.from_json({"snapshot": None, "eta_seconds": None, "stalled": False,
                                "progress_updated_at": None})
    assert empty.step is None and empty.fraction is None and not empty.has_snapshot


def test_reload_refreshes_only_selected_fields() -> None:
    fresh = {**RUN, "status": "completed", "notes": "changed", "name": "renamed"}
    client = client_answering(lambda req: httpx.Response(200, json=fresh))
    run = Run.from_json(RUN, client=client)
    partial = run.reload(fields=["status"])
    assert partial.status == "completed" and partial.name == "mlp" and partial.notes is None
    assert run.status == "running"  # frozen: reload returns a new object
    assert run.reload().name == "renamed"
    with pytest.raises(errors.ValidationError, match="fields: cannot reload 'config'"):
        run.reload(fields=["config"])
    with pytest.raises(errors.ConfigError, match="not bound"):
        Run.from_json(RUN).reload()


def test_create_run_requires_blueprint_or_command_and_splits_strings() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={**RUN, "status": "queued"})

    client = client_answering(handler)
    with pytest.raises(errors.ValidationError, match="exactly one"):
        client.create_run("x")
    with pytest.raises(errors.ValidationError, match="exactly one"):
        client.create_run("x", blueprint="b", command="c")
    client.create_run("x", command="python train.py --lr '0.1 0.2'", priority=3)
    assert bodies[0] == {"name": "x", "command": ["python", "train.py", "--lr", "0.1 0.2"],
                         "priority": 3}


def test_wait_rejects_unknown_status_and_times_out() -> None:
    client = client_answering(lambda req: httpx.Response(200, json={**RUN, "progress": None}))
    with pytest.raises(errors.ValidationError, match="until: unknown status 'done'"):
        client.wait("r1", until=["done"])
    seen: list[str | None] = []
    with pytest.raises(TimeoutError, match="still running"):
        client.wait("r1", timeout=0.05, poll_s=0.01, on_update=lambda r: seen.append(r.status))
    assert seen == ["running"]  # called once: nothing changed afterwards


def test_sse_parser_follows_the_whatwg_rules() -> None:
    lines = ["retry: 2000", ": connected", "", "id: 7", "event: status",
             'data: {"run_id": "r1",', 'data: "status": "queued"}', "", "data:plain",
             "", "id: 8", "", "event: progress", "data: 1", ""]
    out = list(parse_events(lines))
    assert out[0] == (None, 2000)
    events = [e for e, _ in out if e is not None]
    assert events[0].id == "7" and events[0].event == "status"
    assert events[0].data == {"run_id": "r1", "status": "queued"}
    assert events[1].event == "message" and events[1].data == "plain" and events[1].id == "7"
    assert events[2].id == "8" and events[2].event == "progress" and events[2].data == 1


def test_stream_events_reconnects_with_last_event_id() -> None:
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("Last-Event-ID"))
        if len(calls) == 1:
            return httpx.Response(200, text='retry: 0\nid: 41\nevent: status\ndata: {"a":1}\n\n')
        if len(calls) == 2:
            return httpx.Response(503, json={"error": {"type": "StoreError",
                                                       "message": "db down"}})
        return httpx.Response(200, text='id: 42\nevent: status\ndata: {"a":2}\n\n')

    events = client_answering(handler).stream_events()
    got = [next(events), next(events)]
    events.close()
    assert [e.id for e in got] == ["41", "42"]
    assert calls == [None, "41", "41"]


def test_stream_events_gives_up_on_auth_errors() -> None:
    client = client_answering(lambda req: error(401, "AuthError", "bad token"))
    with pytest.raises(errors.AuthError):
        next(client.stream_events())


def test_encode_param() -> None:
    naive = datetime(2030, 1, 1, 12)
    assert encode_param(naive) == "2030-01-01T12:00:00.000Z"
    assert encode_param(True) == "true" and encode_param(("a", 1)) == "a,1"
