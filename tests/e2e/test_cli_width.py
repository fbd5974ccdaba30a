"""``runyard ls`` and ``watch --once`` fit the terminal: real CLI processes against a real
server, at 80 and 200 columns, with ``--wide``, and into a pipe with no width at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ..support.live_server import LiveServer
from ..support.sim_worker import SimWorker, submit
from .test_cli_runs import cli, ok

HEADERS = ["id", "name", "status", "progress", "host", "metrics", "age"]
METRICS = {"loss": 0.2512, "accuracy": 0.9123, "val_loss": 0.3141, "learning_rate": 0.0003,
           "grad_norm": 1.25}


@pytest.fixture(scope="module")
def runs(server: LiveServer) -> Iterator[dict[str, dict[str, Any]]]:
    """A completed run, a failed one and a running one with an ETA, each with metrics."""
    made: dict[str, dict[str, Any]] = {}
    workers: list[SimWorker] = []
    try:
        for name, host, end in (("resnet50-lr0.02-completed", "gpu-box-017", "complete"),
                                ("bert-base-failed", "gpu-box-018", "fail"),
                                ("mlp-still-running", "gpu-box-019", None)):
            made[name] = submit(server, name, max_attempts=1)
            worker = SimWorker(server, host_id=host)
            workers.append(worker)
            assert worker.claim() is not None and worker.run_id == made[name]["id"]
            worker.heartbeat(running=True)
            worker.progress(40, 100, metrics=METRICS, eta_seconds=185.0)
            if end == "complete":
                worker.complete()
            elif end == "fail":
                worker.fail(reason="user_error")
        yield made
    finally:
        for worker in workers:
            worker.close()


STATUSES = {"resnet50-lr0.02-completed": "completed", "bert-base-failed": "failed (user_error)",
            "mlp-still-running": "running"}


def rows_by_name(out: str, runs: dict[str, dict[str, Any]]) -> dict[str, str]:
    lines = out.splitlines()
    found = {name: [line for line in lines if run["id"] in line] for name, run in runs.items()}
    assert all(len(v) == 1 for v in found.values()), out  # one line per run
    return {name: v[0] for name, v in found.items()}


def test_ls_fits_80_columns_dropping_columns_not_words(
        server: LiveServer, runs: dict[str, dict[str, Any]]) -> None:
    out = ok(cli(server, "ls", env={"COLUMNS": "80"}))
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for name, line in rows_by_name(out, runs).items():
        assert name in line and STATUSES[name] in line, line
    header = out.splitlines()[0].split()
    assert header[:3] == ["id", "name", "status"] and "host" not in header
    assert "complet…" not in out


def test_ls_at_200_columns_shows_every_column(server: LiveServer,
                                              runs: dict[str, dict[str, Any]]) -> None:
    out = ok(cli(server, "ls", env={"COLUMNS": "200"}))
    assert all(len(line) <= 200 for line in out.splitlines()), out
    assert out.splitlines()[0].split() == HEADERS
    rows = rows_by_name(out, runs)
    for name, line in rows.items():
        assert STATUSES[name] in line and "loss=0.2512" in line, line
    assert "gpu-box-019" in rows["mlp-still-running"]
    assert "40% eta 3m05s" in rows["mlp-still-running"]


def test_ls_wide_shows_everything_uncut(server: LiveServer,
                                        runs: dict[str, dict[str, Any]]) -> None:
    every = [f"{k}={v:.4g}" for k, v in METRICS.items()]
    for env in ({"COLUMNS": "80"}, {"COLUMNS": "40"}):
        out = ok(cli(server, "ls", "--wide", env=env))
        assert out.splitlines()[0].split() == HEADERS
        for name, line in rows_by_name(out, runs).items():
            assert STATUSES[name] in line and all(m in line for m in every), line
            assert "…" not in line
    assert ok(cli(server, "ls", "-w", env={"COLUMNS": "80"})) .splitlines()[0].split() \
        == HEADERS


def test_a_pipe_without_a_width_gets_every_column(server: LiveServer,
                                                  runs: dict[str, dict[str, Any]]) -> None:
    for columns in ("", "not-a-number"):
        out = ok(cli(server, "ls", env={"COLUMNS": columns}))
        assert out.splitlines()[0].split() == HEADERS
        assert len(rows_by_name(out, runs)) == 3


def test_json_is_untouched_by_width_options(server: LiveServer,
                                            runs: dict[str, dict[str, Any]]) -> None:
    narrow = json.loads(ok(cli(server, "ls", "--json", env={"COLUMNS": "40"})))
    wide = json.loads(ok(cli(server, "ls", "--json", "--wide")))
    assert {r["id"] for r in narrow["items"]} == {r["id"] for r in runs.values()}
    assert [r["id"] for r in narrow["items"]] == [r["id"] for r in wide["items"]]
    assert narrow["items"][0]["progress"]["metrics"] == pytest.approx(METRICS)


def test_watch_once_fits_80_columns(server: LiveServer,
                                    runs: dict[str, dict[str, Any]]) -> None:
    ids = [r["id"] for r in runs.values()]
    out = ok(cli(server, "watch", "--once", *ids, env={"COLUMNS": "80"}))
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for name, line in rows_by_name(out, runs).items():
        assert STATUSES[name] in line, line
    wide = ok(cli(server, "watch", "--once", *ids, env={"COLUMNS": "200"}))
    running = rows_by_name(wide, runs)["mlp-still-running"]
    assert "40/100" in running and "loss=0.2512" in running and "3m05s" in running
