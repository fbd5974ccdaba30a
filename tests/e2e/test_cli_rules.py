"""``runyard rules ls|add|rm`` and ``runyard submit --rule`` in real subprocesses."""

from __future__ import annotations

import json

from ..support.live_server import LiveServer
from .test_cli_runs import cli, ok, one_line_error


def test_rules_commands_and_submit_rules(sqlite_server: LiveServer) -> None:
    out = ok(cli(sqlite_server, "rules", "add", "plateau val_loss patience=5 min_delta=1% -> "
                                                "stop,notify:team", "--project", "vision"))
    assert "added: plateau tag=val_loss patience=5 min_delta=1% -> stop,notify:team" in out
    assert "every run in project vision" in out
    listed = json.loads(ok(cli(sqlite_server, "rules", "ls", "--json")))
    assert [(r["name"], r["project"]) for r in listed] == [("plateau-val_loss", "vision")]
    assert "TAG OP VALUE" in one_line_error(
        cli(sqlite_server, "rules", "add", "threshold loss 10", "-p", "vision"), 1)
    user = ok(cli(sqlite_server, "token", "create", "--name", "alice", "--role", "user")).strip()
    err = one_line_error(cli(sqlite_server, "rules", "add", "nan -> stop", token=user), 1)
    assert "project" in err and "operators" in err
    mine = ok(cli(sqlite_server, "rules", "add", "nan -> stop", "-p", "vision",
                  "--name", "diverged", token=user))
    assert "watches runs of alice in project vision" in mine
    run = json.loads(ok(cli(sqlite_server, "submit", "-c", "python train.py", "--project",
                            "vision", "--rule", "nan loss -> stop,no_retry", "--rule",
                            'log "CUDA out of memory" -> no_retry', "--json")))
    shown = ok(cli(sqlite_server, "show", run["id"]))
    for line in ("nan-loss", "run", "nan tag=loss -> stop,no_retry",
                 'log pattern="CUDA out of memory" -> no_retry', "plateau-val_loss"):
        assert line in shown, shown
    assert "diverged" not in shown  # alice's rule watches alice's runs only
    assert "separated by commas" in one_line_error(
        cli(sqlite_server, "submit", "-c", "true", "--rule", "nan loss -> stop,"), 1)
    ok(cli(sqlite_server, "rules", "rm", str(listed[0]["id"])))
    names = [r["name"] for r in json.loads(ok(cli(sqlite_server, "rules", "ls", "--json")))]
    assert names == ["diverged"]
