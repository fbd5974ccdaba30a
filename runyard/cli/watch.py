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
from runyard.cli import common, fit
from runyard.cli.common import JsonOpt, ProjectOpt, ReadServerOpt, TokenOpt
from runyard.client import Client, Run

#: The statuses of a run not yet ended: what ``watch`` follows when given no run.
NOT_ENDED = tuple(s.value for s in models.Status if not s.is_terminal)


#: Width of a run's progress bar.
BAR_WIDTH = 24
#: ``watch``'s columns; on a narrow terminal the epoch goes first, then the step, the ETA,
#: the metrics (first shortened), the bar and the percentage; id, name and status stay whole.
WATCH_COLUMNS = (fit.Column("id"), fit.Column("name", cut_last=True), fit.Column("status"),
                 fit.Column("progress", rank=3, width=BAR_WIDTH), fit.Column("", rank=2),
                 fit.Column("step", rank=6), fit.Column("epoch", rank=7),
                 fit.Column("metrics", rank=4, items=True), fit.Column("eta", rank=5))


def _frame(runs: list[Run]) -> tuple[Table, int]:
    """The runs as a table fitted to the terminal, and its width."""
    rows: list[list[fit.Cell]] = []
    for run in runs:
        p = run.progress
        rows.append([run.id, run.name or "-", common.status_cell(run),
                     common.progress_bar(run, width=BAR_WIDTH), common.percent(p),
                     common.steps(p),
                     common.number(p.epoch if p else None) + (
                         f"/{common.number(p.total_epochs)}" if p and p.total_epochs else ""),
                     common.metric_items(p)[:3] or ["-"],
                     "-" if run.is_terminal else common.duration(p.eta_seconds if p else None)])
    return fit.table(WATCH_COLUMNS, rows, width=fit.terminal_width())


def watch(run_refs: Annotated[list[str] | None, typer.Argument(
              help="Runs to watch (default: every active run).", show_default=False)] = None,
          once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
          interval: Annotated[float, typer.Option(
              min=0.1, help="Seconds between full refreshes when no event arrives (changes "
                            "arrive on the server's event stream as they happen).")] = 5.0,
          project: ProjectOpt = None, server: ReadServerOpt = None,
          token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Live progress bars (step/total, epoch, loss, ETA, stalled) until the runs end.

    Follows the server's live event stream; with --json, one line per run whenever its
    status or progress changes."""
    with common.reading(server, token) as client:
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
                table, width = _frame(runs)
                fit.console(width).print(table)
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
        with Live(_frame(runs)[0], console=Console(), refresh_per_second=4,
                  transient=False) as live:
            for frame in _follow(client, runs, interval):
                live.update(Group(_frame(frame)[0]))


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
