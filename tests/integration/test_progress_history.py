"""The progress history: keyset pages and the downsampled series in the store on both
dialects, and ``GET /v1/runs/{id}/progress/history`` through the client on the real app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runyard import errors
from runyard.client import Client
from runyard.queue import Queue

from ..support.factories import caps, submit
from ..support.sim_worker import SimWorker


def _snap(step: int, second: int) -> dict[str, Any]:
    return {"schema": "runyard.progress/v1", "seq": step + 1, "step": step,
            "total_steps": 1000, "updated_at": f"2030-01-01T00:{second // 60:02d}:"
                                               f"{second % 60:02d}.000Z",
            "rate": {"value": 2.0, "units": "steps/s"}, "phase": "train"}


def _fill(queue: Queue, n: int) -> tuple[str, int]:
    """A run whose attempt 1 reported ``n`` snapshots (2 steps a second) and whose attempt 2
    reported 3 more; returns (run id, attempt 2's first snapshot step)."""
    queue.fleet.register(caps("w1"))
    run = submit(queue, "hist", max_attempts=3)
    c = queue.claim("w1")
    assert c is not None
    for i in range(n):
        queue.record_progress(c.attempt_id, c.lease, _snap(2 * i, i))
    queue.fail(c.attempt_id, c.lease, reason="lost")
    c2 = queue.claim("w1")
    assert c2 is not None and c2.attempt == 2
    for i in range(3):
        queue.record_progress(c2.attempt_id, c2.lease, _snap(500 + 4 * i, 1000 + i))
    return run["id"], 500


def test_keyset_pages_and_downsampled_series(queue: Queue) -> None:
    store = queue.store
    run_id, _ = _fill(queue, 40)
    seen: list[Any] = []
    after = None
    while True:
        page = store.list_progress(run_id, after_id=after, limit=7)
        seen += page
        if len(page) < 7:
            break
        after = page[-1]["id"]
    assert [r["step"] for r in seen] == [2 * i for i in range(40)] + [500, 504, 508]
    assert [r["attempt"] for r in seen] == [1] * 40 + [2] * 3
    only2 = store.list_progress(run_id, attempt=2)
    assert [r["step"] for r in only2] == [500, 504, 508]

    rows, total = store.progress_series(run_id, points=5)
    assert total == 43 and 2 <= len(rows) <= 6
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 508  # first and last kept
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)
    # Each entry is its bucket's newest; the counts add up (the first is also in a bucket).
    assert sum(r["count"] for r in rows) in (total, total + 1)
    rows, total = store.progress_series(run_id, points=1000)
    assert total == 43 and [r["step"] for r in rows] == [r["step"] for r in seen]
    rows, total = store.progress_series(run_id, points=10, attempt=2)
    assert total == 3 and [r["step"] for r in rows] == [500, 504, 508]
    assert store.progress_series("no-such-run", points=10) == ([], 0)
    with pytest.raises(errors.ValidationError) as e:
        store.progress_series(run_id, points=0)
    assert e.value.field == "points"


@pytest.fixture
def client(app_server: Any) -> Iterator[Client]:
    with Client(app_server.url, app_server.admin_token, transport=app_server.transport) as c:
        yield c


def test_history_over_http(app_server: Any, client: Client) -> None:
    worker = SimWorker(app_server)
    try:
        run = client.create_run("hist", command=["true"])
        assert worker.claim() is not None
        for i in range(30):
            worker._post(f"/v1/attempts/{worker.attempt_id}/progress",
                         {"lease": worker.lease, "snapshot": _snap(2 * i, i)})
    finally:
        worker.close()

    page = client.get_progress_history(run.id, limit=10)
    assert len(page.items) == 10 and page.next == page.items[-1]["id"]
    first = page.items[0]
    assert first["step"] == 0 and first["steps_per_s"] is None and first["rate"] == 2.0
    assert first["snapshot"]["schema"] == "runyard.progress/v1"
    assert first["at"] == "2030-01-01T00:00:00.000Z" and first["attempt"] == 1
    # Two steps a second between consecutive snapshots, by their own times.
    assert {e["steps_per_s"] for e in page.items[1:]} == {2.0}
    rest = client.get_progress_history(run.id, after_id=int(str(page.next)), limit=1000)
    assert [e["step"] for e in rest.items] == [2 * i for i in range(10, 30)]
    assert rest.next is None

    series = client.get_progress_history(run.id, points=4)
    assert 2 <= len(series.items) <= 5
    assert series.items[0]["step"] == 0 and series.items[-1]["step"] == 58
    assert all("snapshot" not in e and e["count"] >= 1 for e in series.items)
    # Over a downsampled history the rate is the mean over each bucket: still 2 steps/s.
    assert {e["steps_per_s"] for e in series.items[1:]} == {2.0}

    with app_server.client(headers=app_server.headers()) as http:
        base = f"/v1/runs/{run.id}/progress/history"
        for params, field in (({"points": 0}, "points"), ({"limit": 1001}, "limit"),
                              ({"points": 5, "limit": 5}, "limit"),
                              ({"after_id": -1}, "after_id"), ({"attempt": "x"}, "attempt"),
                              ({"step": 3}, "step")):
            r = http.get(base, params=params)
            assert r.status_code == 422, (params, r.text)
            assert r.json()["error"]["field"] == field, (params, r.text)
        assert http.get("/v1/runs/nope/progress/history").status_code == 404
