"""``/v1/channels`` and ``/v1/notifications`` on the real app: bad input, who sees what, and
that no read (nor the log, nor a manifest reload's answer) ever shows a URL or a secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.app_server import AppServer
from ..support.receiver import Receiver
from ..support.server_api import Api, admin, error_of
from ..support.ui import wait_until

SECRET = "sixteen-or-more-characters-of-secret"
SLACK = "https://hooks.slack.com/services/T0000/B0000/slack-url-secret-part"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AppServer]:
    server = AppServer(tmp_path / "server", notify_backoff_s=0.05, notify_backoff_max_s=0.2,
                       notify_max_attempts=3, public_url="https://runyard.example").start()
    yield server
    server.stop()


@pytest.mark.parametrize("body, field", [
    ({"name": "bad name", "kind": "webhook", "url": "https://a.example/x"}, "name"),
    ({"name": "x", "kind": "email", "url": "https://a.example/x"}, "kind"),
    ({"name": "x", "kind": "webhook", "url": "ftp://a.example/x"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "file:///etc/passwd"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "https://"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "https://a.example/x", "secret": "short"},
     "secret"),
    ({"name": "x", "kind": "slack", "url": SLACK, "secret": SECRET}, "secret"),
    ({"name": "x", "kind": "webhook"}, "url"),
    ({"name": "x", "kind": "webhook", "url": "https://a.example/x", "secrt": SECRET},
     "secrt"),
    ({"name": "x", "kind": "webhook", "url": ["https://a.example/x"]}, "url"),
    # A lone surrogate, as JSON escapes it (no client library would encode it).
    ('{"name": "x\\ud800", "kind": "webhook", "url": "https://a.example/x"}', "name"),
])
def test_bad_channels_are_422_naming_the_field_and_store_nothing(
        shared_app: AppServer, body: dict[str, Any] | str, field: str) -> None:
    api = admin(shared_app)
    r = (api.post("/v1/channels", content=body.encode(),
                  headers={"content-type": "application/json"}) if isinstance(body, str)
         else api.post("/v1/channels", body))
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert "x" not in {c["name"] for c in api.ok("GET", "/v1/channels")["items"]}


def test_bad_log_queries_are_422(shared_app: AppServer) -> None:
    api = admin(shared_app)
    for params, field in (({"status": "lost"}, "status"), ({"limit": 0}, "limit"),
                          ({"limit": 501}, "limit"), ({"run": "x"}, "run"),
                          ({"before_id": "x"}, "before_id")):
        r = api.get("/v1/notifications", params=params)
        assert r.status_code == 422 and error_of(r)["field"] == field, (params, r.text)
    for method, path in (("DELETE", "/v1/channels/nobody"),
                         ("POST", "/v1/channels/nobody/test")):
        r = api.request(method, path)
        assert r.status_code == 404 and error_of(r)["type"] == "NotFound"


def test_channels_are_listed_without_urls_or_secrets(app: AppServer) -> None:
    op = admin(app)
    viewer = Api(app, op.token("v", "viewer"))
    with Receiver(secret=SECRET) as rec:
        made = op.ok("POST", "/v1/channels", 201,
                     json={"name": "team", "kind": "webhook", "url": rec.url + "?k=tok3n",
                           "secret": SECRET})
        op.ok("POST", "/v1/channels", 201, json={"name": "chat", "kind": "slack", "url": SLACK})
        assert made == {"name": "team", "kind": "webhook",
                        "url": f"http://127.0.0.1:{rec.port}/…", "signed": True,
                        "source": "api", "created_at": made["created_at"],
                        "updated_at": made["updated_at"]}
        for who in (op, viewer):
            listed = who.ok("GET", "/v1/channels")["items"]
            assert [(c["name"], c["kind"], c["signed"]) for c in listed] == [
                ("chat", "slack", False), ("team", "webhook", True)]
            assert listed[0]["url"] == "https://hooks.slack.com/…"
        # Replacing rotates the secret; the delivery then signs with the new one.
        rotated = SECRET[::-1]
        op.ok("POST", "/v1/channels", 201, json={"name": "team", "kind": "webhook",
                                                 "url": rec.url, "secret": rotated})
        rec.secret = rotated
        out = op.ok("POST", "/v1/channels/team/test", 202)
        assert out["channel"] == "team" and out["log"] == "/v1/notifications?channel=team"
        wait_until(lambda: rec.requests(out["delivery"]), 60, "the test delivery")
        assert rec.requests(out["delivery"])[0].signature_ok is True
        assert rec.requests(out["delivery"])[0].json()["details"]["message"] == (
            "test notification for channel team, sent by admin")
        seen = "".join(who.get(path).text for who in (op, viewer) for path in (
            "/v1/channels", "/v1/notifications", "/openapi.json"))
        assert op.request("DELETE", "/v1/channels/chat").status_code == 204
    for secret in (SECRET, rotated, "tok3n", "slack-url-secret-part"):
        assert secret not in seen and secret not in app.log()


def test_the_log_shows_deliveries_of_visible_runs(app: AppServer) -> None:
    op = admin(app)
    alice = Api(app, op.token("alice", "user"))
    viewer = Api(app, op.token("v", "viewer"))
    run = alice.submit("watched")
    other = alice.submit("other")
    state = app.transport.app.state.runyard  # type: ignore[union-attr]
    with Receiver(script=[500]) as rec:
        op.ok("POST", "/v1/channels", 201, json={"name": "team", "kind": "webhook",
                                                 "url": rec.url})
        mine = state.deliverer.enqueue(channel="team", run_id=run["id"], kind="rule",
                                       payload={"rule": "flat"})
        state.deliverer.enqueue(channel="team", run_id=other["id"], kind="rule", payload={})
        test = op.ok("POST", "/v1/channels/team/test", 202)["delivery"]
        wait_until(lambda: all(n["status"] == "delivered" for n in
                               op.ok("GET", "/v1/notifications")["items"]), 60, "deliveries")
    got = viewer.ok("GET", "/v1/notifications", params={"run_id": run["id"]})["items"]
    assert [(n["id"], n["channel"], n["kind"], n["status"]) for n in got] == [
        (mine, "team", "rule", "delivered")]
    assert got[0]["payload"]["run"]["name"] == "watched"
    assert got[0]["delivered_at"] and got[0]["next_attempt_at"] is None
    # The test delivery belongs to no run: operators only.
    assert test not in {n["id"] for n in viewer.ok("GET", "/v1/notifications")["items"]}
    assert {n["id"] for n in alice.ok("GET", "/v1/notifications")["items"]} == {mine, mine + 1}
    every = op.ok("GET", "/v1/notifications", params={"channel": "team"})["items"]
    assert [n["id"] for n in every] == [test, mine + 1, mine]
    assert sum(n["attempts"] for n in every) == 4  # one of them retried once
    page = op.ok("GET", "/v1/notifications", params={"limit": 2})
    assert len(page["items"]) == 2 and page["next_before_id"] == mine + 1
    rest = op.ok("GET", "/v1/notifications", params={"before_id": page["next_before_id"]})
    assert [n["id"] for n in rest["items"]] == [mine] and rest["next_before_id"] is None
    # A deleted run's deliveries stay in the log, for operators.
    op.ok("POST", f"/v1/runs/{run['id']}/cancel", json={})
    assert op.request("DELETE", f"/v1/runs/{run['id']}").status_code in (200, 204)
    assert viewer.ok("GET", "/v1/notifications", params={"run_id": run["id"]})["items"] == []
    assert len(op.ok("GET", "/v1/notifications", params={"run_id": run["id"]})["items"]) == 1
    assert op.ok("GET", "/v1/notifications", params={"status": "failed"})["items"] == []


MANIFEST = """\
[[channels]]
name = "team"
kind = "webhook"
url = "https://hooks.example.org/runyard?token=manifest-url-token"
secret_env = "RUNYARD_TEST_HOOK_SECRET"

[[channels]]
name = "chat"
kind = "slack"
url_env = "RUNYARD_TEST_SLACK_URL"
"""


def test_manifest_reload_stores_channels_with_secrets_from_the_environment(
        app: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = admin(app)
    r = api.post("/v1/manifest/reload", {"text": MANIFEST, "source": "fleet.toml"})
    assert r.status_code == 422
    err = error_of(r)
    assert [(e["file"], e["line"], e["field"]) for e in err["errors"]] == [
        ("fleet.toml", 5, "channels[0].secret_env"), ("fleet.toml", 10, "channels[1].url_env")]
    assert api.ok("GET", "/v1/channels")["items"] == []  # nothing stored
    monkeypatch.setenv("RUNYARD_TEST_HOOK_SECRET", SECRET)
    monkeypatch.setenv("RUNYARD_TEST_SLACK_URL", SLACK)
    dry = api.ok("POST", "/v1/manifest/reload", params={"dry_run": "true"},
                 json={"text": MANIFEST, "source": "fleet.toml"})
    assert dry["channels"] == [{"name": "team", "kind": "webhook", "state": "new"},
                               {"name": "chat", "kind": "slack", "state": "new"}]
    assert api.ok("GET", "/v1/channels")["items"] == []
    done = api.ok("POST", "/v1/manifest/reload", json={"text": MANIFEST, "source": "fleet.toml"})
    assert [c["state"] for c in done["channels"]] == ["new", "new"]
    listed = api.ok("GET", "/v1/channels")["items"]
    assert [(c["name"], c["signed"], c["source"]) for c in listed] == [
        ("chat", False, "fleet.toml"), ("team", True, "fleet.toml")]
    again = api.ok("POST", "/v1/manifest/reload", json={"text": MANIFEST,
                                                        "source": "fleet.toml"})
    assert [c["state"] for c in again["channels"]] == ["unchanged", "unchanged"]
    monkeypatch.setenv("RUNYARD_TEST_HOOK_SECRET", SECRET[::-1])
    rotated = api.ok("POST", "/v1/manifest/reload", json={"text": MANIFEST,
                                                          "source": "fleet.toml"})
    assert [c["state"] for c in rotated["channels"]] == ["changed", "unchanged"]
    valid = api.ok("POST", "/v1/manifest/validate", json={"text": MANIFEST})
    assert valid["channels"] == 2
    shown = "".join(str(x) for x in (dry, done, again, rotated, listed, valid))
    for secret in (SECRET, SECRET[::-1], "manifest-url-token", "slack-url-secret-part"):
        assert secret not in shown and secret not in app.log()
