"""``runyard watch``: live progress bars that follow the server's event stream (docs/cli.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from runyard import models
from runyard.cli import common
from runyard.cli.common import JsonOpt, ProjectOpt, ServerOpt, TokenOpt
from runyard.client import Client, Run
from runyard.client.client import DEFAULT_SERVER

#: The statuses of a run not yet ended: what ``watch`` follows when given no run.
NOT_ENDED = tuple(s.value for s in models.Status if not s.is_terminal)


def _frame(runs: list[Run]) -> Table:
    table = Table("id", "name", "status", "progress", "", "step", "epoch", "metrics", "eta",
                  box=None)
    table.columns[0].no_wrap = True
    for run in runs:
        p = run.progress
        table.add_row(run.id, run.name or "-", common.status_cell(run),
                      common.progress_bar(run, width=30), common.percent(p), common.steps(p),
                      common.number(p.epoch if p else None) + (
                          f"/{common.number(p.total_epochs)}" if p and p.total_epochs else ""),
                      common.key_metrics(p, limit=3),
                      "-" if run.is_terminal else common.duration(p.eta_seconds if p else None))
    return table


def watch(run_refs: Annotated[list[str] | None, typer.Argument(
              help="Runs to watch (default: every active run).", show_default=False)] = None,
          once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
          interval: Annotated[float, typer.Option(
              min=0.1, help="Seconds between full refreshes when no event arrives (changes "
                            "arrive on the server's event stream as they happen).")] = 5.0,
          project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
          token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Live progress bars (step/total, epoch, loss, ETA, stalled) until the runs end.

    Follows the server's live event stream; with --json, one line per run whenever its
    status or progress changes."""
    with common.connect(server, token) as client:
        ids = [common.find(client, ref, project).id for ref in run_refs or []]
        if not ids:
            ids = [r.id for r in client.iter_runs(status=list(NOT_ENDED))]
        if not ids:
            if as_json:
                common.print_json({"items": []})
            else:
                typer.echo("no active runs")
            return
        runs = [client.get_run(i) for i in ids]
        if once:
            if as_json:
                common.print_json({"items": [r.raw for r in runs]})
            else:
                Console(soft_wrap=True).print(_frame(runs))
            return
        if as_json:
            seen: dict[str, Any] = {}
            for frame in _follow(client, runs, interval):
                for run in frame:
                    key = (run.status, run.progress and run.progress.raw)
                    if seen.get(run.id) != key:
                        seen[run.id] = key
                        common.print_json(run.raw)
            return
        with Live(_frame(runs), console=Console(), refresh_per_second=4,
                  transient=False) as live:
            for frame in _follow(client, runs, interval):
                live.update(Group(_frame(frame)))


#: A burst of events (progress every probe, several runs) is fetched at most this often.
_FOLLOW_MIN_GAP_S = 0.2


def _follow(client: Client, runs: list[Run], interval: float) -> Iterator[list[Run]]:
    """The runs, then again each time one of them changed, until all have ended.

    A thread reads the server's event stream and marks the runs it names; those are fetched
    again. Without events (or if the stream fails) every run still active is fetched each
    ``interval`` seconds, so nothing is missed for long either way.
    """
    by_id = {r.id: r for r in runs}
    changed: set[str] = set()
    lock = threading.Lock()
    wake = threading.Event()

    # The stream resumes after the newest event the runs had when they were read, so
    # nothing that happens while it connects is missed.
    latest = [e.id for r in runs for e in client.get_events(r, order="desc", limit=1).items]
    known = [i for i in latest if i is not None]
    start = str(min(known)) if known and len(known) == len(runs) else None

    def listen() -> None:
        only = runs[0].id if len(runs) == 1 else None
        try:
            for event in client.stream_events(run=only, last_event_id=start):
                rid = event.data.get("run_id") if isinstance(event.data, dict) else None
                if rid in by_id:
                    with lock:
                        changed.add(rid)
                    wake.set()
        except Exception:  # whatever ends the stream, the refresh carries on
            return

    threading.Thread(target=listen, name="runyard-watch-events", daemon=True).start()
    yield list(by_id.values())
    while not all(r.is_terminal for r in by_id.values()):
        woke = wake.wait(interval)
        wake.clear()
        with lock:
            todo = set(changed) if woke else {i for i, r in by_id.items() if not r.is_terminal}
            changed.clear()
        for rid in todo:
            by_id[rid] = client.get_run(rid)
        yield list(by_id.values())
        time.sleep(_FOLLOW_MIN_GAP_S)
