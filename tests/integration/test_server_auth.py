"""Roles against endpoints, one assertion per (role, endpoint), plus ownership and revocation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from ..support.server_api import Api, admin, error_of, sha

ROLES = ("anonymous", "viewer", "user", "operator", "worker")
R = "0190000000000aaaaaaaaaa"  # a run id nobody has: allowed calls get past auth, then 404
A = "0190000000000bbbbbbbbbb"
LEASE = {"lease": "x" * 32}
VIEW = {"viewer", "user", "operator"}
USER = {"user", "operator"}
OPER = {"operator"}
WORK = {"worker", "operator"}
HOLD = {"worker", "user", "operator"}
ANY = set(ROLES)
#: Routes whose roles are checked elsewhere, with the setup they need (none today).
UNLISTED: set[tuple[str, str]] = set()
TOML = '[[blueprints]]\nname = "m"\ncommand = ["python", "t.py"]\n'

#: (method, path, request kwargs, roles allowed)
MATRIX: list[tuple[str, str, dict[str, Any], set[str]]] = [
    ("GET", "/v1/health", {}, ANY),
    ("GET", "/metrics", {}, ANY),
    ("GET", "/openapi.json", {}, ANY),
    ("GET", "/v1/runs", {}, VIEW),
    ("GET", f"/v1/runs/{R}", {}, VIEW),
    ("GET", f"/v1/runs/{R}/events", {}, VIEW),
    ("GET", f"/v1/runs/{R}/progress", {}, VIEW),
    ("GET", f"/v1/runs/{R}/progress/history", {}, VIEW),
    ("GET", f"/v1/runs/{R}/explain", {}, VIEW),
    ("GET", f"/v1/runs/{R}/metrics", {}, VIEW),
    ("GET", f"/v1/runs/{R}/metrics/tags", {}, VIEW),
    ("GET", f"/v1/runs/{R}/metrics/loss/series", {}, VIEW),
    ("GET", f"/v1/runs/{R}/logs", {}, VIEW),
    ("GET", f"/v1/runs/{R}/checkpoints", {}, VIEW),
    ("GET", f"/v1/runs/{R}/artifacts", {}, VIEW),
    ("GET", f"/v1/blobs/{'0' * 64}", {}, VIEW),
    ("GET", "/v1/workers", {}, VIEW),
    ("GET", "/v1/blueprints", {}, VIEW),
    ("GET", "/v1/events/stream", {}, VIEW),
    ("GET", "/v1/queue", {}, VIEW),
    ("GET", "/v1/whoami", {}, ANY - {"anonymous"}),
    ("POST", "/v1/runs", {"json": {"name": "m", "command": ["true"]}}, USER),
    ("POST", "/v1/runs/validate", {"json": {"blueprint": "none", "config": {}}}, USER),
    ("PATCH", f"/v1/runs/{R}", {"json": {"notes": "seen"}}, USER),
    ("POST", f"/v1/runs/{R}/stop", {"json": {"grace_seconds": 1}}, USER),
    ("POST", f"/v1/runs/{R}/checkpoint", {"json": {}}, USER),
    ("POST", f"/v1/runs/{R}/restart", {"json": {}}, USER),
    ("POST", f"/v1/runs/{R}/preempt", {"json": {"grace_seconds": 1}}, OPER),
    ("POST", f"/v1/runs/{R}/cancel", {"json": {}}, OPER),
    ("POST", f"/v1/runs/{R}/requeue", {"json": {}}, OPER),
    # Users delete their own local runs (tests/integration/test_server_run_delete.py).
    ("DELETE", f"/v1/runs/{R}", {}, USER),
    ("POST", "/v1/workers/ghost/drain", {}, OPER),
    ("POST", "/v1/workers/ghost/resume", {}, OPER),
    ("DELETE", "/v1/workers/ghost", {}, OPER),
    ("POST", "/v1/manifest/validate", {"json": {"text": TOML}}, OPER),
    ("POST", "/v1/manifest/reload", {"json": {"text": TOML}, "params": {"dry_run": "true"}},
     OPER),
    ("POST", "/v1/tokens", {"json": {"name": "made-by-matrix", "role": "viewer"}}, OPER),
    ("GET", "/v1/tokens", {}, OPER),
    # The exchange needs no token (the code is the credential): an unknown code is 404 to all.
    ("POST", "/v1/signin", {"json": {"code": "x" * 43}}, ANY),
    ("POST", "/v1/signin-links", {"json": {}}, OPER),
    ("DELETE", "/v1/tokens/nobody", {}, OPER),
    ("POST", "/v1/blueprints", {"json": {"name": "bp", "command": ["true"]}}, OPER),
    ("GET", "/v1/rules", {}, VIEW),
    ("POST", "/v1/rules", {"json": {"when": "nan", "project": "matrix"}}, USER),
    ("DELETE", "/v1/rules/999999", {}, USER),
    ("POST", "/v1/channels",
     {"json": {"name": "matrix", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}}, OPER),
    ("GET", "/v1/channels", {}, VIEW),
    ("DELETE", "/v1/channels/nobody", {}, OPER),
    ("POST", "/v1/channels/nobody/test", {}, OPER),
    ("GET", "/v1/notifications", {}, VIEW),
    ("POST", "/v1/workers/claim", {"json": {"host_id": "matrix-box", "capabilities": {}}},
     WORK),
    ("POST", f"/v1/attempts/{A}/heartbeat", {"json": LEASE}, HOLD),
    ("POST", f"/v1/attempts/{A}/progress", {"json": LEASE}, HOLD),
    # Kubeflow's trainer status: an attempt's own credential (tested with its attempt in
    # test_server_trainer_status.py) and operators; no lease, so no worker.
    ("POST", f"/v1/attempts/{A}/trainer-status", {"json": {"trainerStatus": {}}}, OPER),
    ("POST", f"/v1/attempts/{A}/logs", {"json": {**LEASE, "chunks": []}}, HOLD),
    ("POST", f"/v1/attempts/{A}/complete", {"json": LEASE}, HOLD),
    ("POST", f"/v1/attempts/{A}/placement", {"json": LEASE}, HOLD),
    ("POST", f"/v1/attempts/{A}/fail", {"json": {**LEASE, "reason": "lost"}}, HOLD),
    ("POST", f"/v1/attempts/{A}/checkpoints",
     {"json": {**LEASE, "step": 1, "status": "incomplete"}}, HOLD),
    ("POST", f"/v1/runs/{R}/metrics", {"json": {**LEASE, "attempt_id": A, "points": []}}, HOLD),
    ("GET", f"/v1/attempts/{A}/resume", {"headers": {"X-Runyard-Lease": "x" * 32}}, HOLD),
    ("POST", "/v1/runs/import", {"json": {"run": {}}}, USER),
    ("POST", f"/v1/runs/{R}/import/metrics", {"json": {"attempt": 1, "points": []}}, USER),
    ("POST", f"/v1/runs/{R}/import/checkpoints",
     {"json": {"attempt": 1, "step": 1, "status": "complete"}}, USER),
    ("PUT", f"/v1/runs/{R}/import/artifacts/a.bin",
     {"params": {"attempt": 1}, "content": b"a", "headers": {"X-Content-SHA256": sha(b"a")}},
     USER),
    ("PUT", f"/v1/runs/{R}/artifacts/a.bin",
     {"params": {"attempt_id": A}, "content": b"a",
      "headers": {"X-Content-SHA256": sha(b"a"), "X-Runyard-Lease": "x" * 32}}, HOLD),
]


@pytest.fixture(scope="module")
def clients(shared_app):  # type: ignore[no-untyped-def]
    op = admin(shared_app)
    out = {"anonymous": Api(shared_app, None), "operator": op}
    for role in ("viewer", "user", "worker"):
        out[role] = Api(shared_app, op.token(f"t-{role}", role))
    yield out
    for c in out.values():
        c.close()


def _status(api: Api, method: str, path: str, kw: dict[str, Any]) -> int:
    headers = {**api.http.headers, **kw.get("headers", {})}
    req = api.http.build_request(method, path, **{**kw, "headers": headers})
    resp = api.http.send(req, stream=True)  # the event stream never ends: read the status only
    try:
        if resp.status_code in (401, 403):
            resp.read()
            err = error_of(resp)
            assert err["type"] == ("AuthError" if resp.status_code == 401 else "Forbidden")
        return resp.status_code
    finally:
        resp.close()


CASES = [pytest.param(role, m, p, kw, role in allowed, id=f"{role}-{m}-{p}")
         for (m, p, kw, allowed) in MATRIX for role in ROLES]


@pytest.mark.parametrize("role, method, path, kw, allowed", CASES)
def test_role_matrix(clients: dict[str, Api], role: str, method: str, path: str,
                     kw: dict[str, Any], allowed: bool) -> None:
    status = _status(clients[role], method, path, kw)
    if allowed:
        assert status not in (401, 403) and status < 500, status
    else:
        assert status == (401 if role == "anonymous" else 403), status


def _template(path: str) -> str:
    """A matrix path with its ids put back as the route's parameters, for comparison."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_route_has_a_row_in_the_matrix() -> None:
    """Generated from the app: a new route without a row here fails, so its roles are
    decided and tested, not assumed."""
    from runyard.server import app as app_module

    routes = set()
    for module in (app_module.routes_admin, app_module.routes_runs, app_module.routes_data,
                   app_module.routes_rules, app_module.routes_sync, app_module.routes_workers,
                   app_module.routes_notify, app_module.sse, app_module.ui_api,
                   app_module.routes_trainer, app_module.routes_signin):
        for route in module.router.routes:
            if isinstance(route, APIRoute):
                routes.update((m, _template(route.path)) for m in route.methods)
    covered = set()
    for method, path, _, _ in MATRIX:
        for m, template in routes:
            pattern = "^" + re.escape(template).replace(r"\{\}", "[^/]+") + "$"
            if m == method and re.match(pattern, path.split("?")[0]):
                covered.add((m, template))
    missing = sorted(routes - covered - UNLISTED)
    assert not missing, f"routes with no row in MATRIX: {missing}"


def test_users_change_only_their_own_runs(app_server) -> None:  # type: ignore[no-untyped-def]
    op = admin(app_server)
    alice = Api(app_server, op.token("alice", "user"))
    bob = Api(app_server, op.token("bob", "user"))
    run = alice.submit("mine")
    assert run["owner"] == "alice"
    for action in ("stop", "checkpoint", "restart"):
        r = bob.post(f"/v1/runs/{run['id']}/{action}", {})
        assert r.status_code == 403 and "belongs to 'alice'" in error_of(r)["message"]
    assert alice.ok("POST", f"/v1/runs/{run['id']}/stop", json={})["status"] == "cancelled"
    assert bob.post(f"/v1/runs/{run['id']}/requeue", {}).status_code == 403
    assert op.ok("POST", f"/v1/runs/{run['id']}/requeue", json={})["status"] == "queued"
    events = op.ok("GET", f"/v1/runs/{run['id']}/events")["items"]
    assert [e["actor"] for e in events] == ["alice", "alice", "admin"]


def test_token_lifecycle_and_revocation(app_server) -> None:  # type: ignore[no-untyped-def]
    op = admin(app_server)
    secret = op.token("ci", "viewer")
    assert secret.startswith("ry_") and len(secret) > 40
    viewer = Api(app_server, secret)
    assert viewer.get("/v1/runs").status_code == 200
    r = op.post("/v1/tokens", {"name": "ci", "role": "viewer"})
    assert r.status_code == 409
    r = op.post("/v1/tokens", {"name": "x", "role": "root"})
    assert r.status_code == 422 and error_of(r)["field"] == "role"
    r = op.post("/v1/tokens", {"name": "bad name!", "role": "user"})
    assert r.status_code == 422 and error_of(r)["field"] == "name"
    listed = {t["name"]: t for t in op.ok("GET", "/v1/tokens")["items"]}
    assert set(listed) == {"admin", "ci"} and listed["ci"]["role"] == "viewer"
    assert "token" not in listed["ci"] and "token_hash" not in listed["ci"]
    assert listed["ci"]["last_used_at"] is not None
    assert op.request("DELETE", "/v1/tokens/ci").status_code == 204
    assert op.request("DELETE", "/v1/tokens/ci").status_code == 404
    # Revocation takes effect at once on this server (its cache is dropped).
    assert viewer.get("/v1/runs").status_code == 401
    # Secrets never reach the log.
    assert secret not in app_server.log() and app_server.admin_token not in \
        app_server.log()
    assert Api(app_server, None).get("/v1/runs",
                                     headers={"Authorization": "Basic abc"}).status_code == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_token_cache_answers_without_the_database_only_when_it_may(store) -> None:  # type: ignore[no-untyped-def]
    """The event loop's shortcut: a fresh hit is answered from memory; a first sight, an
    expired entry or a last use due to be recorded goes to the database (``None``)."""
    from runyard import errors
    from runyard.server import auth

    _, secret = auth.create_token(store, "alice", "user")
    header = f"Bearer {secret}"
    tokens = auth.TokenAuth(store, cache_s=60)
    assert tokens.cached(header) is None  # never seen: needs the database
    who = tokens.resolve(header)
    assert who.name == "alice" and who.role is auth.Role.USER
    assert store.list_tokens()[-1]["last_used_at"] is not None
    assert tokens.cached(header) == who
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(errors.AuthError):
            tokens.cached(bad)
    # A last use due to be recorded sends the request the slow way, which records it.
    tokens._touched["alice"] -= auth.TOUCH_EVERY_S
    assert tokens.cached(header) is None
    tokens.resolve(header)
    assert tokens.cached(header) == who
    # An unknown token is cached as refused.
    stranger = "Bearer ry_" + "x" * 43
    with pytest.raises(errors.AuthError):
        tokens.resolve(stranger)
    with pytest.raises(errors.AuthError, match="invalid or revoked"):
        tokens.cached(stranger)
    # Expired entries are looked up again.
    stale = auth.TokenAuth(store, cache_s=0)
    stale.resolve(header)
    assert stale.cached(header) is None
