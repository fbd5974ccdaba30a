"""The server keeps only snapshots whose known fields have their protocol types; one that does
not becomes a warning event (as an out-of-bounds one does), over HTTP against a real server."""

from __future__ import annotations

from typing import Any

import pytest

from runyard.progress import snapshot

from ..support.server_api import Api, admin

GOOD: dict[str, Any] = {
    "schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00.000Z", "seq": 3,
    "phase": "train", "step": 3, "total_steps": 10, "epoch": 0.5, "total_epochs": None,
    "percent": 30, "rate": {"value": "NaN", "units": "steps/s"}, "eta_seconds": 1.5,
    "operations": [{"operation": "eval", "value": 2, "final_value": None, "units": "batches"}],
    "metrics": {"loss": 0.5, "acc": 1, "nan": "NaN", "inf": "-Infinity"},
    "message": "epoch 1", "status": "completed", "custom": {"kept": ["as", "is"]},
}

BAD: list[tuple[str, Any]] = [
    ("message", {"innerHTML": ["<a href='https://evil.example'>sign in</a>"],
                 "style": {"position": "fixed"}}),
    ("message", ["<img src=x>"]),
    ("message", 5),
    ("message", "x" * 5000),
    ("step", "5"),
    ("step", 2.5),
    ("step", True),
    ("step", -1),
    ("seq", {"a": 1}),
    ("total_steps", "10"),
    ("epoch", "1"),
    ("epoch", {"innerHTML": "x"}),
    ("total_epochs", [1]),
    ("percent", "50%"),
    ("eta_seconds", "soon"),
    ("phase", {"innerHTML": ["<b>x</b>"]}),
    ("phase", ""),
    ("status", ["done"]),
    ("updated_at", 5),
    ("schema", {"x": 1}),
    ("metrics", {"loss": {"innerHTML": "<img>"}}),
    ("metrics", {"loss": "0.5"}),
    ("metrics", {"loss": [1]}),
    ("metrics", {"loss": True}),
    ("metrics", [1, 2]),
    ("rate", {"value": "fast"}),
    ("rate", {"value": 1, "units": {"innerHTML": "x"}}),
    ("rate", {"units": "steps/s"}),
    ("rate", "fast"),
    ("operations", {"operation": "x"}),
    ("operations", [{"operation": {"innerHTML": "x"}}]),
    ("operations", [{"operation": "eval", "value": "many"}]),
    ("operations", ["eval"]),
]


def test_a_good_snapshot_has_no_type_problems() -> None:
    assert snapshot.check_types(GOOD) == []
    assert snapshot.check_types({"schema": "runyard.progress/v1"}) == []


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_each_out_of_type_field_is_named(field: str, value: Any) -> None:
    problems = snapshot.check_types({**GOOD, field: value})
    assert problems and all(p.startswith(field) for p in problems), problems
    # The schema the SDK and agent validate against agrees.
    assert snapshot.validate_snapshot({**GOOD, field: value})


def test_the_server_keeps_only_well_typed_snapshots(app_server) -> None:  # type: ignore[no-untyped-def]
    api: Api = admin(app_server)
    try:
        run = api.submit("typed")
        claim = api.claim()
        assert claim
        aid, lease = claim["attempt"]["id"], claim["lease"]
        api.ok("POST", f"/v1/attempts/{aid}/progress", json={"lease": lease, "snapshot": GOOD})
        for field, value in BAD:
            api.ok("POST", f"/v1/attempts/{aid}/progress",
                   json={"lease": lease, "snapshot": {**GOOD, "step": 4, field: value}})
        kept = api.ok("GET", f"/v1/runs/{run['id']}/progress")["snapshot"]
        assert kept["message"] == "epoch 1" and kept["step"] == 3
        assert api.ok("GET", f"/v1/runs/{run['id']}")["progress"]["message"] == "epoch 1"
        events = api.ok("GET", f"/v1/runs/{run['id']}/events", params={"limit": 500})["items"]
        warnings = [e["details"]["message"] for e in events if e["kind"] == "warning"]
        assert len(warnings) == len(BAD), warnings
        assert all(w.startswith("progress snapshot rejected: ") for w in warnings)
        assert any("message" in w for w in warnings)
    finally:
        api.close()
