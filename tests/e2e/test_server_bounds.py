"""Out-of-range and ill-typed input is a 4xx naming the field, never a 500: integers wider
than their column (64 bits for steps and offsets, PostgreSQL's 32-bit ``integer`` for counts,
priorities and exit codes), non-ASCII leases, objects where text is expected, and manifests
nested deeper than any real one. On both databases."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..support.server_api import Api, admin, caps, error_of, shared_server
from ..support.thread_server import ThreadServer

BIG = 2**63
I32 = 2**31


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        with shared_server(tmp_path_factory, stale_after_s=600) as server:
            client = admin(server)
            yield client
            client.close()
        return
    url = request.getfixturevalue("pg_databases").new()
    server = ThreadServer(tmp_path_factory.mktemp("pg-server"), url, stale_after_s=600).start()
    client = admin(server)
    yield client
    client.close()
    server.stop()


@pytest.fixture(scope="module")
def held(shared: Api) -> dict[str, Any]:
    """A claimed attempt (its lease is live while the module runs)."""
    shared.submit("held", priority=10**6)
    got = shared.claim("bounds-box")
    assert got is not None
    return got


def _assert_names(r: Any, field: str) -> None:
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text}"
    err = error_of(r)
    assert err["field"] == field or field in str(err["message"]) or any(
        field in str(e) for e in err.get("errors") or []), err


@pytest.mark.parametrize("extra, field", [
    ({"priority": BIG}, "priority"),
    ({"priority": I32}, "priority"),
    ({"priority": -BIG - 1}, "priority"),
    ({"max_attempts": BIG}, "max_attempts"),
    ({"max_attempts": I32}, "max_attempts"),
    ({"max_restarts_on_errors": I32}, "max_restarts_on_errors"),
    ({"retry_on_exit_codes": [BIG]}, "retry_on_exit_codes"),
    ({"seed": BIG}, "seed"),
    ({"constraints": {"gpus": BIG}}, "constraints.gpus"),
    ({"constraints": {"gpus": I32}}, "constraints.gpus"),
    ({"constraints": {"gpus": 1e300}}, "constraints.gpus"),
])
def test_run_integers_past_64_bits(shared: Api, extra: dict[str, Any], field: str) -> None:
    r = shared.post("/v1/runs", {"name": "big", "command": ["a"], **extra})
    _assert_names(r, field)


def test_events_after_seq_past_64_bits(shared: Api, held: dict[str, Any]) -> None:
    r = shared.get(f"/v1/runs/{held['run']['id']}/events", params={"after_seq": BIG})
    _assert_names(r, "after_seq")


def test_claim_slots_past_64_bits(shared: Api) -> None:
    for slots in (BIG, I32):
        r = shared.post("/v1/workers/claim", {"host_id": "huge", "capabilities": caps(
            "huge", slots=slots)})
        _assert_names(r, "slots")
    r = shared.post("/v1/workers/claim", {"host_id": "huge", "capabilities": caps("huge"),
                                          "free_slots": BIG})
    _assert_names(r, "free_slots")


@pytest.mark.parametrize("path, body, field", [
    ("complete", {"exit_code": BIG}, "exit_code"),
    ("complete", {"exit_code": I32}, "exit_code"),
    ("fail", {"reason": "user_error", "exit_code": BIG}, "exit_code"),
    ("progress", {"snapshot": {"step": BIG}}, "step"),
    ("progress", {"snapshot": {"step": 1, "seq": I32}}, "seq"),
    ("checkpoints", {"step": BIG, "status": "incomplete"}, "step"),
    ("heartbeat", {"lease": "\u00e9t\u00e9"}, "lease"),
    ("progress", {"lease": "\u00e9t\u00e9", "snapshot": {"step": 1}}, "lease"),
])
def test_attempt_calls(shared: Api, held: dict[str, Any], path: str, body: dict[str, Any],
                       field: str) -> None:
    att = held["attempt"]["id"]
    r = shared.post(f"/v1/attempts/{att}/{path}", {"lease": held["lease"], **body})
    _assert_names(r, field)
    # The attempt is still live: nothing above ended it.
    assert shared.post(f"/v1/attempts/{att}/heartbeat",
                       {"lease": held["lease"]}).status_code == 200


_ids = itertools.count()


def _record(run: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"run": {"id": f"imp{next(_ids)}bounds", "name": "imp", "status": "completed",
                    **(run or {})}, **extra}


@pytest.mark.parametrize("record, field", [
    (_record({"host_id": {"a": 1}}), "run.host_id"),
    (_record({"artifact_store": {"a": 1}}), "run.artifact_store"),
    (_record({"name": {"a": 1}}), "run.name"),
    (_record({"project": {"a": 1}}), "run.project"),
    (_record({"termination_reason": {"a": 1}}), "run.termination_reason"),
    (_record({"exit_code": BIG}), "run.exit_code"),
    (_record({"exit_code": I32}), "run.exit_code"),
    (_record(attempts=[{"number": BIG}]), "attempts[0].number"),
    (_record(attempts=[{"number": I32}]), "attempts[0].number"),
    (_record(attempts=[{"host_id": {"a": 1}}]), "attempts[0].host_id"),
    (_record(attempts=[{"exit_code": BIG}]), "attempts[0].exit_code"),
    (_record(events=[{"attempt": BIG}]), "events[0].attempt"),
    (_record(events=[{"attempt": I32}]), "events[0].attempt"),
    (_record(events=[{"kind": {"a": 1}}]), "events[0].kind"),
    (_record(events=[{"status": {"a": 1}}]), "events[0].status"),
    (_record(events=[{"actor": ["x"]}]), "events[0].actor"),
])
def test_import_refuses_ill_typed_records(shared: Api, record: dict[str, Any],
                                          field: str) -> None:
    r = shared.post("/v1/runs/import", record)
    _assert_names(r, field)


DEEP_MANIFESTS = [
    "[" + ".".join(f"k{i}" for i in range(5000)) + "]\nx = 1\n",
    "a = " + "[" * 5000 + "]" * 5000 + "\n",
    "a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n",
    '[[jobs]]\nname = "x"\ncommand = ["a"]\n[jobs.config.'
    + ".".join(f"k{i}" for i in range(3000)) + "]\nx = 1\n",
]


@pytest.mark.parametrize("text", DEEP_MANIFESTS, ids=["tables", "arrays", "inline", "config"])
def test_deep_manifest_is_a_manifest_error(shared: Api, text: str) -> None:
    r = shared.post("/v1/manifest/validate", {"text": text})
    assert r.status_code == 422, r.text[:300]
    assert error_of(r)["type"] == "ManifestError"


@pytest.mark.parametrize("text", DEEP_MANIFESTS[1:], ids=["arrays", "inline", "config"])
def test_cli_validates_deep_manifest_without_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / "deep.toml").write_text(text)
    res = subprocess.run([sys.executable, "-m", "runyard", "manifest", "validate", "deep.toml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "nested deeper than" in res.stderr, res.stderr
