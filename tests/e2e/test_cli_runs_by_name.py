"""Runs named by name on the command line, and the runs API's filters, sort, edits,
checkpoints and log tail through ``runyard`` subprocesses against a real server."""

from __future__ import annotations

import json
from typing import Any

from ..support.sim_worker import SimWorker, submit
from .test_cli_runs import cli, ok, one_line_error


def test_every_run_command_takes_a_name(sqlite_server: Any) -> None:
    a_old = submit(sqlite_server, "look-slow", project="alpha")
    a_new = submit(sqlite_server, "look-slow", project="alpha", tags=["x"])
    b = submit(sqlite_server, "look-slow", project="beta")
    only = submit(sqlite_server, "only-here", project="beta")
    # A name in one project: its newest run, with or without --project.
    shown = json.loads(ok(cli(sqlite_server, "show", "only-here", "--json")))
    assert shown["run"]["id"] == only["id"]
    # Several projects and no --project: one line naming the candidates, exit 1.
    line = one_line_error(cli(sqlite_server, "show", "look-slow"), 1)
    assert "several projects" in line and a_new["id"] in line and b["id"] in line
    assert a_old["id"] not in line  # the newest of each project
    shown = json.loads(ok(cli(sqlite_server, "show", "look-slow", "--project", "alpha",
                              "--json")))
    assert shown["run"]["id"] == a_new["id"]
    shown = json.loads(ok(cli(sqlite_server, "show", "look-slow", "--json",
                              env={"RUNYARD_PROJECT": "beta"})))
    assert shown["run"]["id"] == b["id"]
    # An id, and the start of one.
    assert json.loads(ok(cli(sqlite_server, "show", a_old["id"], "--json")))["run"]["id"] == \
        a_old["id"]
    prefix = a_old["id"][:-4]
    others = [r["id"] for r in (a_new, b, only) if r["id"].startswith(prefix)]
    if not others:
        assert json.loads(ok(cli(sqlite_server, "show", prefix, "--json")))["run"]["id"] == \
            a_old["id"]
    # Nothing of that name.
    line = one_line_error(cli(sqlite_server, "show", "no-such-run"), 1)
    assert "no run with the id or name 'no-such-run'" in line
    # The lifecycle commands go through the same resolver.
    out = json.loads(ok(cli(sqlite_server, "cancel", "only-here", "--json")))
    assert out["id"] == only["id"] and out["status"] == "cancelled"
    assert ok(cli(sqlite_server, "wait", "only-here", "--until", "cancelled", "--json"))
    line = one_line_error(cli(sqlite_server, "stop", "look-slow"), 1)
    assert "several projects" in line


def test_edit_ls_filters_checkpoints_and_log_tail(sqlite_server: Any) -> None:
    runs = [submit(sqlite_server, f"sweep-{i}", project=f"p{i % 2}", version=f"v{i % 3}")
            for i in range(6)]
    out = json.loads(ok(cli(sqlite_server, "edit", "sweep-1", "--notes", "best so far",
                            "--tag", "keep", "--tag", "lr=0.1", "--json")))
    assert out["id"] == runs[1]["id"] and out["notes"] == "best so far"
    assert out["tags"] == ["keep", "lr=0.1"]
    ok(cli(sqlite_server, "edit", "sweep-3", "--tag", "keep", "--name", "sweep-3b"))
    out = json.loads(ok(cli(sqlite_server, "edit", "sweep-1", "--untag", "lr=0.1", "--json")))
    assert out["tags"] == ["keep"]
    line = one_line_error(cli(sqlite_server, "edit", "sweep-1", "--tag", "no good"), 1)
    assert "tags" in line
    assert one_line_error(cli(sqlite_server, "edit", "sweep-1"), 2)
    listed = json.loads(ok(cli(sqlite_server, "ls", "--tag", "keep", "--sort", "name:asc",
                               "--json")))
    assert [r["name"] for r in listed["items"]] == ["sweep-1", "sweep-3b"]
    listed = json.loads(ok(cli(sqlite_server, "ls", "--project", "p0", "--version", "v0",
                               "--version", "v2", "--sort", "name:desc", "--json")))
    assert [r["name"] for r in listed["items"]] == ["sweep-2", "sweep-0"]
    listed = json.loads(ok(cli(sqlite_server, "ls", "--sort", "project:asc", "--sort",
                               "created_at:desc", "--limit", "2", "--json")))
    assert [r["id"] for r in listed["items"]] == [runs[4]["id"], runs[2]["id"]]
    assert listed["next_cursor"]
    line = one_line_error(cli(sqlite_server, "ls", "--sort", "colour"), 1)
    assert "sort" in line
    # Checkpoints and the log tail of a running run, by name.
    run = submit(sqlite_server, "tailed", priority=10)  # claimed before the queued sweeps
    worker = SimWorker(sqlite_server, host_id="cli-box")
    try:
        worker.claim()
        worker.heartbeat(running=True)
        worker.log("".join(f"line {i}\n" for i in range(100)))
        sha = worker.artifact("ck/5.pt", b"five", kind="checkpoint")
        worker.checkpoint(5, sha256=sha, size=4)
        worker.checkpoint(9)
        assert ok(cli(sqlite_server, "logs", "tailed", "--tail", "2")) == "line 98\nline 99\n"
        found = json.loads(ok(cli(sqlite_server, "checkpoints", "tailed", "--status",
                                  "complete", "--json")))
        assert [c["step"] for c in found["items"]] == [5]
        found = json.loads(ok(cli(sqlite_server, "checkpoints", run["id"], "--sort",
                                  "step:desc", "--json")))
        assert [c["step"] for c in found["items"]] == [9, 5]
        assert "complete" in ok(cli(sqlite_server, "checkpoints", "tailed"))
    finally:
        worker.close()
