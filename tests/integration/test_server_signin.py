"""One-time sign-in links over HTTP against the real app (a real SQLite file), and the store's
one-use guarantee on both dialects."""

from __future__ import annotations

import threading
import time

import pytest

from runyard import errors
from runyard.models import Role
from runyard.server import auth, schemas, signin
from runyard.store import Store

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, error_of


def code_of(url: str) -> str:
    base, _, fragment = url.partition("#")
    assert base.endswith("/login") and fragment.startswith("code=")
    return fragment.removeprefix("code=")


def store_of(server: AppServer) -> Store:
    """The app's own store (the one its routes use)."""
    assert server.transport is not None
    found: Store = server.transport.app.state.runyard.store
    return found


def test_a_link_signs_in_once_as_an_operator(app_server: AppServer) -> None:
    op = admin(app_server)
    link = op.ok("POST", "/v1/signin-links", 201, json={})
    assert link["url"].startswith("http://testserver/login#code=")
    schemas.SigninLink.model_validate(link)  # the answers are the declared models
    code = code_of(link["url"])
    assert code == link["code"] and len(code) == signin.CODE_LEN
    anon = Api(app_server, None)
    r = anon.post("/v1/signin", {"code": code})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    out = r.json()
    schemas.SignedIn.model_validate(out)
    assert out["role"] == "operator" and out["name"].startswith("admin@web-")
    me = Api(app_server, out["token"]).ok("GET", "/v1/whoami")
    assert me["name"] == out["name"] and me["role"] == "operator"
    listed = {t["name"]: t for t in op.ok("GET", "/v1/tokens")["items"]}
    assert listed[out["name"]]["role"] == "operator"

    # The link is dead now, and says which token it made.
    r = anon.post("/v1/signin", {"code": code})
    assert r.status_code == 409
    message = error_of(r)["message"]
    assert "already used" in message and out["name"] in message
    # Signing that browser out is revoking its token: the other tokens are untouched.
    op.ok("DELETE", f"/v1/tokens/{out['name']}", 204)
    assert Api(app_server, out["token"]).get("/v1/whoami").status_code == 401
    assert op.get("/v1/whoami").status_code == 200
    # The code never reaches the log.
    assert code not in app_server.log()


def test_wrong_expired_and_malformed_codes_are_refused(app_server: AppServer) -> None:
    anon = Api(app_server, None)
    r = anon.post("/v1/signin", {"code": "ry_" + "x" * 40})
    assert r.status_code == 404 and "not valid" in error_of(r)["message"]
    # An expired code: made 11 minutes ago, for 10.
    store = store_of(app_server)
    old = signin.mint(store, "admin", Role.OPERATOR, now=time.time() - 660)
    r = anon.post("/v1/signin", {"code": old.secret})
    assert r.status_code == 409 and "expired" in error_of(r)["message"]
    assert "10 minutes" in error_of(r)["message"]
    # Still refused afterwards (an expired code is never taken).
    assert anon.post("/v1/signin", {"code": old.secret}).status_code == 409
    for body in ({}, {"code": ""}, {"code": 5}, {"code": "x" * 201},
                 {"code": "x" * 43, "role": "operator"}):
        r = anon.post("/v1/signin", body)
        assert r.status_code == 422, (body, r.text)
    # The exchange needs no token, and a bad one does not get in its way; its body is small.
    r = anon.post("/v1/signin", {"code": "y" * 43}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 404
    r = anon.post("/v1/signin", {"code": "z" * 5000})
    assert r.status_code == 413
    # Only operators make links; a link is never for a worker.
    viewer = Api(app_server, admin(app_server).token("v", "viewer"))
    assert viewer.post("/v1/signin-links", {}).status_code == 403
    with pytest.raises(errors.ValidationError, match="not workers"):
        signin.mint(store, "w", Role.WORKER)
    for ttl in (0, -1, 86401, "soon"):
        r = admin(app_server).post("/v1/signin-links", {"ttl_s": ttl})
        assert r.status_code == 422, (ttl, r.text)


def test_a_short_link_expires_and_says_so(app_server: AppServer) -> None:
    op = admin(app_server)
    link = op.ok("POST", "/v1/signin-links", 201, json={"ttl_s": 60})
    store = store_of(app_server)
    # The exchange as it would run two minutes on: refused as expired, and never used.
    with pytest.raises(errors.Conflict, match="expired .* 1 minutes"):
        signin.exchange(store, link["code"], now=time.time() + 120)
    assert store.signin_code(auth.hash_token(link["code"]))["used_at"] is None


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_code_is_taken_once_by_concurrent_exchanges(store: Store) -> None:
    code = signin.mint(store, "admin", Role.OPERATOR)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        try:
            row, _ = signin.exchange(store, code.secret)
            results.append(f"ok {row['name']}")
        except errors.Conflict as exc:
            results.append(f"refused {exc.message}")

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [r for r in results if r.startswith("ok")]
    assert len(results) == 8 and len(won) == 1, results
    assert all("already used" in r for r in results if r.startswith("refused"))
    row = store.signin_code(auth.hash_token(code.secret))
    assert row is not None and row["token_name"] == won[0].removeprefix("ok ")
    # Codes long expired are forgotten when a new one is made.
    stale = signin.mint(store, "admin", Role.OPERATOR,
                        now=time.time() - signin.KEEP_EXPIRED_S - 1000)
    signin.mint(store, "admin", Role.OPERATOR)
    assert store.signin_code(auth.hash_token(stale.secret)) is None
    assert store.signin_code(auth.hash_token(code.secret)) is not None
