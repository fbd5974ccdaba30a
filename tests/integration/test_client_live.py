"""``runyard.Client`` against the real app (in process, on a real SQLite file), and the simulated
worker the client and CLI tests share."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runyard import errors
from runyard.client import Client, Run, StreamEvent

from ..support.live_server import free_port
from ..support.sim_worker import SimWorker, create_token, submit


@pytest.fixture
def client(app_server: Any) -> Iterator[Client]:
    with Client(app_server.url, app_server.admin_token, transport=app_server.transport) as c:
        yield c


@pytest.fixture
def worker(app_server: Any) -> Iterator[SimWorker]:
    w = SimWorker(app_server)
    yield w
    w.close()


def test_create_get_and_validate(client: Client, app_server: Any) -> None:
    bp = {"name": "mlp", "command": ["python", "train.py", "--config", "{config_file}"],
          "config_schema": {"type": "object", "required": ["lr"],
                            "properties": {"lr": {"type": "number", "exclusiveMinimum": 0}},
                            "additionalProperties": False}}

    with app_server.client(headers=app_server.headers()) as http:
        r = http.post("/v1/blueprints", json=bp)
    assert r.status_code == 201, r.text
    assert [b["name"] for b in client.list_blueprints()] == ["mlp"]

    run = client.create_run("mlp-small", project="demo", version="2", notes="first",
                            blueprint="mlp", config={"lr": 0.01},
                            constraints={"min_ram_gib": 1, "prefer_cuda": True},
                            priority=5, max_attempts=2)
    assert isinstance(run, Run) and run.status == "queued" and run.client is client
    got = client.get_run(run.id)
    assert (got.name, got.project, got.version, got.notes) == ("mlp-small", "demo", "2", "first")
    assert got.config == {"lr": 0.01} and got.priority == 5 and got.max_attempts == 2
    assert got.constraints is not None and got.constraints["min_ram_gib"] == 1
    assert got.created_at is not None and got.created_at.tzinfo is not None
    assert got.explain is not None and got.explain["summary"] == "no worker is registered yet"
    assert client.explain(run)["workers"] == []

    assert client.validate_run("mlp", {"lr": 0.5})["valid"] is True
    with pytest.raises(errors.ValidationError) as info:
        client.validate_run("mlp", {"lr": -1, "extra": 1})
    assert info.value.field is not None and info.value.field.startswith("config")
    assert len(info.value.errors) == 2
    with pytest.raises(errors.ValidationError) as info:
        client.create_run("bad", blueprint="mlp", config={"lr": "fast"})
    assert info.value.field == "config.lr"
    with pytest.raises(errors.ValidationError, match="name"):
        client.create_run("-bad name-", command=["true"])
    assert client.health()


def test_list_filters_fields_sort_and_gapless_pagination(client: Client) -> None:
    made = [client.create_run(f"exp-{i}", command=["true"], project="p1" if i % 2 else "p2")
            for i in range(7)]
    ids = {r.id for r in made}
    seen: list[str] = []
    page = client.list_runs(limit=3)
    while True:
        seen.extend(r.id for r in page)
        if page.next is None:
            break
        page = client.list_runs(limit=3, after_id=str(page.next))
    assert len(seen) == len(set(seen)) == 7 and set(seen) == ids
    assert seen == [r.id for r in reversed(made)]  # newest first by default
    assert [r.id for r in client.iter_runs(page_size=2)] == seen
    oldest_first = [r.id for r in client.iter_runs(page_size=2, sort="created_at")]
    assert oldest_first == list(reversed(seen))

    assert {r.project for r in client.iter_runs(project="p1")} == {"p1"}
    assert len(list(client.iter_runs(project="p1"))) == 3
    assert [r.name for r in client.iter_runs(name_like="EXP-_")] != []  # ILIKE, any case
    assert len(list(client.iter_runs(name_like="%-6"))) == 1
    assert len(list(client.iter_runs(status="queued"))) == 7
    assert list(client.iter_runs(status=["running", "failed"])) == []
    assert list(client.iter_runs(host="nowhere")) == []
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(client.iter_runs(created_after=future)) == []
    assert len(list(client.iter_runs(created_before=future))) == 7

    slim = client.list_runs(limit=1, fields=["name"]).items[0]
    assert slim.name is not None and slim.status is None and set(slim.raw) == {"id", "name"}
    with pytest.raises(errors.ValidationError, match="fields"):
        client.list_runs(fields=["no_such_column"])
    with pytest.raises(errors.ValidationError, match="status"):
        client.list_runs(status="done")


def test_worker_data_reads(client: Client, worker: SimWorker, tmp_path: Path) -> None:
    run = client.create_run("data", command=["python", "train.py"])
    assert worker.claim() is not None
    worker.heartbeat(running=True)
    worker.progress(25, 100, epoch=1.5, metrics={"loss": 0.5}, eta_seconds=30.0)
    worker.metrics("loss", [1.0 / (i + 1) for i in range(250)])
    worker.metrics("acc", [0.1, "NaN", 0.3])
    worker.log("hello\nworld\n")
    worker.log("oops\n", stream="stderr")
    blob = b"weights" * 1000
    sha = worker.artifact("model.bin", blob, kind="checkpoint")
    worker.checkpoint(20, sha256=sha, size=len(blob), name="model.bin", loss=0.5)

    fresh = client.get_run(run)
    assert fresh.status == "running" and fresh.host_id == "sim-1"
    assert fresh.progress is not None and fresh.progress.step == 25
    assert fresh.progress.fraction == 0.25 and fresh.progress.metrics == {"loss": 0.5}
    assert fresh.attempts is not None and fresh.attempts[0].number == 1
    prog = client.get_progress(run)
    assert prog.step == 25 and prog.eta_seconds == 30.0 and prog.epoch == 1.5
    assert prog.progress_updated_at is not None

    reloaded = run.reload(fields=["status", "progress"])
    assert reloaded.status == "running" and reloaded.progress is not None
    assert reloaded.name == "data" and run.status == "queued"

    tags = {t.tag: t for t in client.get_metric_tags(run)}
    assert tags["loss"].count == 250 and tags["loss"].last_step == 249
    assert tags["acc"].count == 3
    page = client.get_metrics(run, tag="loss", limit=100)
    assert len(page) == 100 and page.next is not None
    second = client.get_metrics(run, tag="loss", after_step=int(page.next), limit=100)
    assert second.items[0].step == page.items[-1].step + 1
    everything = client.get_all_metrics(run, tag="loss", page_size=60)
    assert [p.step for p in everything] == list(range(250))
    both = client.get_all_metrics(run)
    assert len(both) == 253
    acc = [p for p in both if p.tag == "acc"]
    assert acc[1].value is not None and math.isnan(acc[1].value)
    series = client.get_series(run, "loss", points=10)
    # The server adds the first point beside the N buckets (reported to the lead).
    assert series.total == 250 and 2 <= len(series.points) <= 11
    assert series.points[0].step == 0 and series.points[-1].step == 249
    assert series.points[0].max == 1.0
    ranged = client.get_series(run, "loss", points=5, min_step=100, max_step=199)
    assert ranged.points[0].step >= 100 and ranged.points[-1].step <= 199

    out = client.get_logs(run)
    assert out.data == "hello\nworld\n" and out.next_offset == 12
    assert client.get_logs(run, offset=6).data == "world\n"
    assert client.get_logs(run, offset=out.next_offset).data == ""
    assert client.get_logs(run, stream="stderr", attempt=1).data == "oops\n"

    [ckpt] = client.get_checkpoints(run)
    assert ckpt.step == 20 and ckpt.status == "complete" and ckpt.sha256 == sha
    arts = client.get_artifacts(run)
    assert [(a.name, a.sha256, a.size) for a in arts] == [("model.bin", sha, len(blob))]
    dest = client.download_blob(sha, tmp_path / "model.bin")
    assert dest.read_bytes() == blob
    with pytest.raises(errors.NotFound):
        client.download_blob("0" * 64, tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin").exists()

    workers = client.list_workers()
    assert [w.host_id for w in workers] == ["sim-1"]
    assert workers[0].active_attempts == 1 and workers[0].drained is False
    client.drain("sim-1")
    assert client.list_workers()[0].drained is True
    client.resume("sim-1")
    assert client.list_workers()[0].drained is False
    with pytest.raises(errors.NotFound):
        client.drain("no-such-host")

    worker.complete()
    events = list(client.iter_events(run, page_size=2))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gaps
    assert [e.status for e in events if e.kind == "status"][-1] == "completed"
    newest = client.get_events(run, limit=1, order="desc").items[0]
    assert newest.seq == events[-1].seq
    assert client.get_events(run, after_seq=events[-1].seq).items == ()


def test_lifecycle_verbs(client: Client, worker: SimWorker) -> None:
    run = client.create_run("life", command=["python", "train.py"])
    worker.claim()
    worker.heartbeat(running=True)
    stopping = client.stop(run, grace=5)
    assert stopping.status == "stopping"
    beat = worker.heartbeat()
    assert beat["stop"] is True and 4 < beat["grace_s"] <= 5  # what is left of it
    worker.fail(exit_code=-15, reason="stopped")
    assert client.get_run(run).status == "stopped"

    restarted = run.restart(resources={"min_ram_gib": 2})
    assert restarted.status == "queued"
    assert client.get_run(run).constraints["min_ram_gib"] == 2  # type: ignore[index]
    cancelled = client.cancel(run)
    assert cancelled.status == "cancelled"
    with pytest.raises(errors.IllegalTransition) as info:
        client.cancel(run)
    assert "cancelled" in info.value.message and info.value.details["http_status"] == 409
    assert client.requeue(run).status == "queued"
    client.delete(run)
    with pytest.raises(errors.NotFound):
        client.get_run(run.id)
    with pytest.raises(errors.NotFound):
        client.stop("no-such-run")


def test_auth_errors(app_server: Any) -> None:
    with Client(app_server.url, "wrong-token", transport=app_server.transport) as bad, \
            pytest.raises(errors.AuthError) as info:
        bad.list_runs()
    assert type(info.value) is errors.AuthError
    with Client(app_server.url, create_token(app_server, "viewer"),
                transport=app_server.transport) as viewer:
        assert viewer.list_runs().items == ()
        with pytest.raises(errors.Forbidden):
            viewer.create_run("nope", command=["true"])
    run = submit(app_server, "owned")
    with Client(app_server.url, create_token(app_server, "user"),
                transport=app_server.transport) as user:
        with pytest.raises(errors.Forbidden):
            user.cancel(run["id"])  # operator only
        with pytest.raises(errors.Forbidden):
            user.stop(run["id"])  # not the owner


def test_unreachable_server_is_a_transport_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "t") as c, \
            pytest.raises(errors.TransportError, match="cannot reach the server") as info:
        c.get_run("x")
    assert info.value.__cause__ is not None


def test_wait_reports_updates_and_returns_final_run(client: Client, worker: SimWorker) -> None:
    run = client.create_run("waited", command=["python", "train.py"])

    def train() -> None:
        time.sleep(0.3)
        worker.claim()
        worker.heartbeat(running=True)
        for step in (10, 20):
            time.sleep(0.3)
            worker.progress(step, 20)
        time.sleep(0.3)
        worker.complete()

    thread = threading.Thread(target=train)
    thread.start()
    updates: list[Run] = []
    try:
        final = client.wait(run, on_update=updates.append, poll_s=0.1, timeout=20)
    finally:
        thread.join()
    assert final.status == "completed"
    statuses = [u.status for u in updates]
    assert statuses[0] == "queued" and statuses[-1] == "completed" and "running" in statuses
    steps = [u.progress.step for u in updates if u.progress is not None]
    assert 10 in steps and 20 in steps
    # Each call saw something new: no update repeats the previous one.
    keys = [(u.status, u.progress and u.progress.step) for u in updates]
    assert all(a != b for a, b in zip(keys, keys[1:], strict=False))

    queued = client.create_run("never", command=["true"])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still queued"):
        queued.wait(timeout=0.5, poll_s=0.1)
    assert time.monotonic() - started < 3
    assert client.wait(queued, until=["queued"]).status == "queued"


def test_stream_events_receives_status_and_progress(client: Client, worker: SimWorker) -> None:
    other = client.create_run("other", command=["true"])
    run = client.create_run("streamed", command=["true"])
    worker.claim()  # the oldest: "other"
    assert worker.run_id == other.id

    everything = client.stream_events(last_event_id="0", read_timeout=10)
    try:
        first = next(everything)
    finally:
        everything.close()
    assert first.event == "status" and first.id is not None
    assert first.data == {**first.data, "run_id": other.id, "status": "queued", "seq": 1}

    stream = client.stream_events(run=run, last_event_id="0", read_timeout=10)
    try:
        queued = next(stream)
        assert (queued.event, queued.data["run_id"], queued.data["status"]) == (
            "status", run.id, "queued")
        second = SimWorker(worker.server, host_id="sim-2")
        try:
            assert second.claim() is not None and second.run_id == run.id
            second.heartbeat(running=True)
            second.progress(5, 10)
            seen: list[StreamEvent] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                event = next(stream)
                seen.append(event)
                if event.event == "progress":
                    break
        finally:
            second.close()
    finally:
        stream.close()
    assert [e.data["status"] for e in seen if e.event == "status"] == ["claimed", "running"]
    assert all(int(e.id or 0) > int(queued.id or 0) for e in seen if e.event == "status")
    progress = seen[-1]
    assert progress.event == "progress" and progress.data["run_id"] == run.id
    assert progress.data["progress"]["step"] == 5
    assert progress.id == seen[-2].id  # no id of its own: the last one stays (as EventSource)


def test_sim_worker_claims_and_completes(app_server: Any) -> None:
    run = submit(app_server, "sim-check")
    worker = SimWorker(app_server)
    try:
        claim = worker.claim()
        assert claim is not None and claim["run"]["id"] == run["id"]
        assert worker.claim() is None  # nothing else is queued
        worker.heartbeat()
        assert worker.complete()["status"] == "completed"
    finally:
        worker.close()
