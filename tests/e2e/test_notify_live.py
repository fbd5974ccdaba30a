"""Notifications through real ``runyard server`` processes: a delivery waiting in backoff
survives a restart and is delivered exactly once after it; the channels and notifications
commands of the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runyard.store import open_store

from ..support.live_server import LiveServer
from ..support.receiver import Receiver
from ..support.server_api import admin
from ..support.ui import wait_until
from .test_cli_runs import cli, ok, one_line_error

SECRET = "a-secret-the-receiver-shares-with-us"
BACKOFF = ["--notify-backoff-s", "0.5", "--notify-backoff-max-s", "1",
           "--notify-max-attempts", "100"]


def test_a_delivery_in_backoff_is_delivered_once_after_a_restart(tmp_path: Path,
                                                                 db_url: str) -> None:
    server = LiveServer(tmp_path / "server", db_url, extra_args=BACKOFF).start()
    try:
        with Receiver(secret=SECRET, default=500) as rec:
            api = admin(server)
            api.ok("POST", "/v1/channels", 201, json={"name": "team", "kind": "webhook",
                                                      "url": rec.url, "secret": SECRET})
            delivery = api.ok("POST", "/v1/channels/team/test", 202)["delivery"]
            wait_until(lambda: rec.requests(delivery), 60, "a first, refused attempt")
            api.close()
            server.stop()  # SIGTERM: an attempt in flight finishes and is recorded first
            refused = len(rec.requests(delivery))
            store = open_store(db_url, upgrade=False)
            try:
                (row,) = store.get_notifications([delivery])
            finally:
                store.close()
            assert (row["status"], row["attempts"]) == ("pending", refused)
            assert row["last_error"] == "HTTP 500: receiver says 500"
            rec.default = 200  # the receiver is back while the server is down
            server.start()
            api = admin(server)
            done = wait_until(lambda: [n for n in api.ok("GET", "/v1/notifications")["items"]
                                       if n["status"] != "pending"], 60, "the delivery")
            got = rec.requests(delivery)
        assert [n["id"] for n in done] == [delivery] and done[0]["status"] == "delivered"
        assert [r.answered for r in got] == [500] * refused + [200]  # exactly once
        assert done[0]["attempts"] == refused + 1
        assert all(r.signature_ok for r in got)
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_channels_and_notifications_commands(sqlite_server: Any) -> None:
    with Receiver(secret=SECRET) as rec:
        env = {"TEAM_SECRET": SECRET, "SLACK_URL": "https://hooks.slack.com/services/a/b/c"}
        out = ok(cli(sqlite_server, "channels", "add", "team", "--url", rec.url,
                     "--secret-env", "TEAM_SECRET", env=env))
        assert out.strip() == (f"runyard: channel 'team' (webhook, signed) -> "
                               f"http://127.0.0.1:{rec.port}/…")
        ok(cli(sqlite_server, "channels", "add", "chat", "--kind", "slack", "--url-env",
               "SLACK_URL", env=env))
        listed_json = ok(cli(sqlite_server, "channels", "ls", "--json"))
        assert [(c["name"], c["kind"], c["url"]) for c in json.loads(listed_json)["items"]] == [
            ("chat", "slack", "https://hooks.slack.com/…"),
            ("team", "webhook", f"http://127.0.0.1:{rec.port}/…")]
        sent = ok(cli(sqlite_server, "channels", "test", "team", "--wait"))
        assert "delivered to 'team' (attempts: 1)" in sent
        assert rec.requests()[0].signature_ok is True
        log_json = ok(cli(sqlite_server, "notifications", "--channel", "team", "--json"))
        assert [(n["channel"], n["kind"], n["status"]) for n in json.loads(log_json)["items"]
                ] == [("team", "test", "delivered")]
        bad = one_line_error(cli(sqlite_server, "channels", "add", "x", "--url",
                                 "ftp://example.org/x"), 1)
        assert "url: only http and https URLs are allowed" in bad
        usage = one_line_error(cli(sqlite_server, "channels", "add", "x", "--url-env",
                                   "UNSET_VAR"), 2)
        assert "UNSET_VAR is not set" in usage
        assert "removed" in ok(cli(sqlite_server, "channels", "rm", "chat"))
        table = ok(cli(sqlite_server, "notifications"))
        assert "team" in table and "delivered" in table
        viewer = admin(sqlite_server).token("looker", "viewer")
        refused = one_line_error(cli(sqlite_server, "channels", "test", "team",
                                     token=viewer), 1)
        assert "operator only" in refused
    for shown in (listed_json, log_json, table, sqlite_server.log()):
        assert SECRET not in shown and "services/a/b/c" not in shown
