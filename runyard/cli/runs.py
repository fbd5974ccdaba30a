"""Run commands that talk to a server: submit, ls, show, watch, logs, metrics, stop, restart,
cancel, requeue, rm, wait (PRODUCT.md section 10)."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from runyard import errors, models
from runyard.cli import common
from runyard.cli.app import EXIT_ERROR, EXIT_USAGE, app, fail
from runyard.cli.common import JsonOpt, ServerOpt, TokenOpt
from runyard.client import Client, Run
from runyard.client.client import DEFAULT_SERVER
from runyard.manifest.overrides import parse_config_overrides

ACTIVE = ("queued", "claimed", "running", "stopping")
RunArg = Annotated[str, typer.Argument(help="Run id.", show_default=False)]


def _statuses(values: list[str] | None) -> list[str] | None:
    """``--status a,b --status c`` -> checked list; an unknown status is a usage error."""
    if not values:
        return None
    out = [s.strip() for v in values for s in v.split(",") if s.strip()]
    for s in out:
        try:
            models.Status.parse(s)
        except errors.ValidationError as exc:
            raise fail(f"--status: {exc.message.removeprefix('status: ')}", EXIT_USAGE) from None
    return out


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"{option}: expected KEY=VALUE, got {item!r}", EXIT_USAGE)
        out[key.strip()] = value
    return out


# --------------------------------------------------------------------------- submit


class _ArgvCommand(TyperCommand):
    """Keeps everything after ``--`` as the run's argv instead of positional arguments."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["runyard.argv"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


@app.command(cls=_ArgvCommand)
def submit(
    ctx: typer.Context,
    blueprint: Annotated[str | None, typer.Argument(
        help="Blueprint to run (or give --command, or the argv after --).")] = None,
    command: Annotated[str | None, typer.Option(
        "--command", "-c", help="Command line to run (split like a shell, run without one).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: blueprint or program).")
                    ] = None,
    project: Annotated[str | None, typer.Option(help="Project.")] = None,
    version: Annotated[str | None, typer.Option(help="Version label.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free-form notes.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Config override KEY=VALUE (dotted keys nest); repeatable.")] = None,
    require_cuda: Annotated[bool, typer.Option("--require-cuda", help="Only CUDA hosts.")
                            ] = False,
    prefer_cuda: Annotated[bool, typer.Option("--prefer-cuda", help="CUDA hosts when free.")
                           ] = False,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs needed.")] = None,
    min_vram_gib: Annotated[float | None, typer.Option(min=0, help="VRAM per GPU.")] = None,
    min_ram_gib: Annotated[float | None, typer.Option(min=0, help="Host RAM.")] = None,
    min_cpus: Annotated[float | None, typer.Option(min=0, help="Host CPUs.")] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Allowed host glob; repeatable.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Required host label KEY=VALUE; repeatable.")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="Environment variable NAME=VALUE for the run; repeatable.")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Attempts in all.")] = None,
    max_restarts_on_errors: Annotated[int | None, typer.Option(
        min=0, help="Retries after a non-zero exit.")] = None,
    stall_after_s: Annotated[float | None, typer.Option(
        help="Seconds without a new step before the run is marked stalled.")] = None,
    validate_only: Annotated[bool, typer.Option(
        "--validate", help="Only validate the submission; queue nothing.")] = False,
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Submit a run: a BLUEPRINT, --command "...", or the argv after --."""
    argv: list[str] | None = ctx.meta.get("runyard.argv")
    given = [blueprint is not None, command is not None, bool(argv)]
    if sum(given) != 1:
        raise fail("give exactly one of BLUEPRINT, --command or -- ARGV...", EXIT_USAGE)
    run_command: str | list[str] | None = argv or command
    if name is None:
        program = Path(argv[0] if argv else (command or "").split()[0]).name if not blueprint \
            else blueprint
        name = program or "run"
    constraints: dict[str, Any] = {k: v for k, v in (
        ("gpus", gpus), ("min_vram_gib", min_vram_gib), ("min_ram_gib", min_ram_gib),
        ("min_cpus", min_cpus)) if v is not None}
    if require_cuda:
        constraints["require_cuda"] = True
    if prefer_cuda:
        constraints["prefer_cuda"] = True
    if host:
        constraints["allowed_hosts"] = list(host)
    if label:
        constraints["labels"] = _pairs(label, "--label")
    kwargs: dict[str, Any] = dict(
        project=project, version=version, notes=notes, blueprint=blueprint,
        command=run_command, config=parse_config_overrides(config or []),
        constraints=constraints or None, priority=priority, max_attempts=max_attempts,
        max_restarts_on_errors=max_restarts_on_errors, stall_after_s=stall_after_s,
        env=_pairs(env, "--env") or None)
    with common.connect(server, token) as client:
        if validate_only:
            if blueprint is None:
                raise fail("--validate checks a config against a BLUEPRINT; give one",
                           EXIT_USAGE)
            result = client.validate_run(blueprint, kwargs["config"])
            if as_json:
                common.print_json(result)
            else:
                typer.echo(f"{name}: valid")
            return
        run = client.create_run(name, **kwargs)
    if as_json:
        common.print_json(run.raw)
    else:
        typer.echo(f"submitted run {run.id} ({run.name}): {run.status}")


# --------------------------------------------------------------------------- ls / show


def _run_row(run: Run) -> list[Any]:
    p = run.progress
    pct = common.percent(p)
    if p is not None and p.eta_seconds is not None and not run.is_terminal:
        pct += f" eta {common.duration(p.eta_seconds)}"
    style = common.STATUS_STYLE.get(run.status or "", "")
    return [run.id, run.name or "-", Text(common.status_text(run), style=style), pct,
            run.host_id or "-", common.key_metrics(p), common.ago(run.created_at)]


@app.command("ls")
def list_runs(
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="Only these statuses (comma-separated or repeated).")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Name pattern, SQL ILIKE (% any, _ one character).")] = None,
    host: Annotated[str | None, typer.Option(help="Only runs on this host.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows per page.")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every matching run.")] = False,
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List runs, newest first: id, name, status, progress and ETA, host, metrics, age."""
    filters: dict[str, Any] = {"status": _statuses(status), "project": project,
                               "name_like": name, "host": host}
    with common.connect(server, token) as client:
        if all_pages:
            runs = list(client.iter_runs(page_size=limit, **filters))
            more = None
        else:
            page = client.list_runs(limit=limit, **filters)
            runs, more = list(page.items), page.next
    if as_json:
        common.print_json({"items": [r.raw for r in runs], "next_after_id": more})
        return
    table = Table("id", "name", "status", "progress", "host", "metrics", "age", box=None)
    table.columns[0].no_wrap = True
    for run in runs:
        table.add_row(*_run_row(run))
    console = Console(soft_wrap=True)
    console.print(table if runs else "no runs")
    if more is not None:
        console.print("[dim]more runs: --limit, or --all[/dim]")


@app.command()
def show(run_ref: RunArg, events: Annotated[int, typer.Option(
            min=0, help="How many of the last events to show.")] = 10,
         server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Details of one run: status, progress, attempts, last events; for a queued run, why."""
    with common.connect(server, token) as client:
        run = client.get_run(run_ref)
        recent = list(client.get_events(run, limit=events, order="desc").items) if events else []
        explain = run.explain
        if run.status == "queued" and explain is None:
            explain = client.explain(run)
    if as_json:
        common.print_json({"run": run.raw, "events": [e.raw for e in recent],
                           "explain": explain})
        return
    console = Console(soft_wrap=True)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    cmd = " ".join(run.command) if run.command else "-"
    for key, value in (
        ("run", run.id), ("name", run.name), ("project", run.project),
        ("status", Text(common.status_text(run), style=common.STATUS_STYLE.get(
            run.status or "", ""))),
        ("blueprint", run.blueprint), ("command", cmd), ("host", run.host_id),
        ("executor", run.executor), ("attempt", f"{run.attempt} of {run.max_attempts}"),
        ("created", f"{common.iso(run.created_at)} ({common.ago(run.created_at)})"),
        ("started", common.iso(run.started_at)), ("ended", common.iso(run.ended_at)),
        ("exit code", run.exit_code), ("config", run.config),
        ("constraints", {k: v for k, v in (run.constraints or {}).items() if v}),
        ("workdir", run.workdir), ("artifacts", run.artifact_store),
    ):
        if value in (None, "", {}):
            value = "-"
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        head.add_row(key, value if isinstance(value, Text) else str(value))
    console.print(head)
    p = run.progress
    if p is not None and p.has_snapshot:
        console.print(f"\n[bold]progress[/bold] {common.percent(p)}  step {common.steps(p)}"
                      f"  epoch {common.number(p.epoch)}  phase {p.phase or '-'}"
                      f"{'' if run.is_terminal else '  eta ' + common.duration(p.eta_seconds)}"
                      f"{'  [red]STALLED[/red]' if p.stalled else ''}"
                      f"  updated {common.ago(p.progress_updated_at or p.updated_at)}")
        if p.metrics:
            console.print("  " + "  ".join(f"{k}={common.number(v)}"
                                           for k, v in sorted(p.metrics.items())))
        if p.message:
            console.print(f"  {p.message}")
    if run.attempts:
        table = Table("attempt", "host", "claimed", "ended", "reason", "exit", box=None,
                      title="attempts", title_justify="left")
        for a in run.attempts:
            table.add_row(str(a.number), a.host_id or "-", common.iso(a.claimed_at) or "-",
                          common.iso(a.ended_at) or ("active" if a.active else "-"),
                          a.termination_reason or "-", common.number(
                              None if a.exit_code is None else float(a.exit_code)))
        console.print(table)
    if recent:
        table = Table("seq", "at", "kind", "status", "actor", "details", box=None,
                      title="last events", title_justify="left")
        for e in reversed(recent):
            table.add_row(str(e.seq), common.iso(e.at) or "-", e.kind or "-", e.status or "-",
                          e.actor or "-", _details(e.details))
        console.print(table)
    if explain:
        _print_explain(console, explain)


def _details(details: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in details.items() if k != "stderr_tail" and v not in (None, "")]
    tail = details.get("stderr_tail")
    if tail:
        parts.append("stderr: " + " | ".join(str(line) for line in list(tail)[-3:]))
    return ", ".join(parts) or "-"


def _print_explain(console: Console, explain: dict[str, Any]) -> None:
    console.print(f"\n[bold]scheduling[/bold]: {explain.get('summary', '-')}")
    for w in explain.get("workers") or ():
        verdict = "eligible" if w.get("eligible") else "; ".join(
            str(u) for u in w.get("unmet") or ()) or "not eligible"
        state = f" [{', '.join(w.get('state') or ())}]" if w.get("state") else ""
        console.print(f"  {w.get('host_id')}: {verdict}{state}")


# --------------------------------------------------------------------------- watch


def _frame(runs: list[Run]) -> Table:
    table = Table("id", "name", "status", "progress", "", "step", "epoch", "metrics", "eta",
                  box=None)
    table.columns[0].no_wrap = True
    for run in runs:
        p = run.progress
        frac = p.fraction if p else None
        bar: Any = ProgressBar(total=100.0, completed=(frac or 0.0) * 100, width=30,
                               pulse=frac is None and run.status == "running")
        if run.status == "completed":
            bar = ProgressBar(total=100.0, completed=100.0, width=30)
        table.add_row(run.id, run.name or "-", Text(common.status_text(run),
                      style=common.STATUS_STYLE.get(run.status or "", "")), bar,
                      common.percent(p), common.steps(p),
                      common.number(p.epoch if p else None) + (
                          f"/{common.number(p.total_epochs)}" if p and p.total_epochs else ""),
                      common.key_metrics(p, limit=3),
                      "-" if run.is_terminal else common.duration(p.eta_seconds if p else None))
    return table


@app.command()
def watch(run_refs: Annotated[list[str] | None, typer.Argument(
              help="Runs to watch (default: every active run).", show_default=False)] = None,
          once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
          interval: Annotated[float, typer.Option(
              min=0.1, help="Seconds between full refreshes when no event arrives (changes "
                            "arrive on the server's event stream as they happen).")] = 5.0,
          server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Live progress bars (step/total, epoch, loss, ETA, stalled) until the runs end.

    Follows the server's live event stream; with --json, one line per run whenever its
    status or progress changes."""
    with common.connect(server, token) as client:
        ids = list(run_refs or [])
        if not ids:
            ids = [r.id for r in client.iter_runs(status=list(ACTIVE))]
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


# --------------------------------------------------------------------------- logs / metrics


@app.command()
def logs(run_ref: RunArg,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output "
                                              "until the run ends.")] = False,
         stderr: Annotated[bool, typer.Option("--stderr", help="The stderr stream.")] = False,
         attempt: Annotated[int | None, typer.Option(min=1, help="Attempt (default: latest).")
                            ] = None,
         interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls (-f).")
                             ] = 1.0,
         server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Print a run's captured stdout (or --stderr)."""
    stream = "stderr" if stderr else "stdout"
    offset = 0
    with common.connect(server, token) as client:
        while True:
            chunk = client.get_logs(run_ref, stream=stream, offset=offset, attempt=attempt)
            if chunk.data:
                if as_json:
                    common.print_json({"data": chunk.data, "offset": offset,
                                       "next_offset": chunk.next_offset,
                                       "attempt": chunk.attempt, "stream": stream})
                else:
                    sys.stdout.write(chunk.data)
                    sys.stdout.flush()
            moved = chunk.next_offset > offset
            offset = max(offset, chunk.next_offset)
            if moved and chunk.data:
                continue  # more may be waiting right away
            if not follow or client.get_run(run_ref).is_terminal:
                # One last read after the end catches output flushed at exit.
                if follow:
                    last = client.get_logs(run_ref, stream=stream, offset=offset,
                                           attempt=attempt)
                    if last.data and not as_json:
                        sys.stdout.write(last.data)
                    elif last.data:
                        common.print_json({"data": last.data, "offset": offset,
                                           "next_offset": last.next_offset,
                                           "attempt": last.attempt, "stream": stream})
                return
            time.sleep(interval)


@app.command()
def metrics(run_ref: RunArg,
            tag: Annotated[str | None, typer.Option(help="One metric (default: list tags).")
                           ] = None,
            as_csv: Annotated[bool, typer.Option("--csv", help="Every point as CSV.")] = False,
            points: Annotated[int | None, typer.Option(
                min=2, help="Downsample --tag to N buckets (min, max, last).")] = None,
            server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """A run's metrics: the tags, one tag's points, a downsampled series, or all as CSV."""
    if points is not None and tag is None:
        raise fail("--points needs --tag", EXIT_USAGE)
    with common.connect(server, token) as client:
        if points is not None and tag is not None:
            series = client.get_series(run_ref, tag, points=points)
            rows: list[list[Any]] = [[p.step, p.min, p.max, p.last, p.count]
                                     for p in series.points]
            header = ["step", "min", "max", "last", "count"]
            if as_json:
                common.print_json({"tag": series.tag, "total": series.total,
                                   "points": [dict(zip(header, r, strict=True)) for r in rows]})
                return
        elif tag is not None or as_csv:
            found = client.get_all_metrics(run_ref, tag=tag)
            header = ["step", "tag", "value", "at", "attempt"]
            rows = [[p.step, p.tag, p.value, common.iso(p.at), p.attempt] for p in found]
            if as_json:
                common.print_json({"items": [dict(zip(header, r, strict=True)) for r in rows]})
                return
        else:
            tags = client.get_metric_tags(run_ref)
            header = ["tag", "count", "last_step", "last_value"]
            rows = [[t.tag, t.count, t.last_step, t.last_value] for t in tags]
            if as_json:
                common.print_json({"items": [dict(zip(header, r, strict=True)) for r in rows]})
                return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[common.number(v) if isinstance(v, float) and v != v else v
                           for v in row] for row in rows])
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*[common.number(v) if isinstance(v, float) else
                        ("-" if v is None else str(v)) for v in row])
    Console(soft_wrap=True).print(table if rows else "no metrics")


# --------------------------------------------------------------------------- lifecycle


def _done(run: Run, verb: str, as_json: bool) -> None:
    if as_json:
        common.print_json(run.raw)
    else:
        typer.echo(f"run {run.id}: {verb}; now {run.status}")


@app.command()
def stop(run_ref: RunArg,
         grace: Annotated[float, typer.Option(min=0, help="Seconds between SIGTERM and SIGKILL.")
                          ] = 30.0,
         server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Stop a run gracefully (stop file and SIGTERM, SIGKILL after the grace period)."""
    with common.connect(server, token) as client:
        _done(client.stop(run_ref, grace=grace), "stop requested", as_json)


@app.command()
def restart(run_ref: RunArg,
            gpus: Annotated[int | None, typer.Option(min=0, help="New GPU count.")] = None,
            require_cuda: Annotated[bool | None, typer.Option(
                "--require-cuda/--no-require-cuda", help="Change the CUDA requirement.")
            ] = None,
            min_vram_gib: Annotated[float | None, typer.Option(min=0)] = None,
            min_ram_gib: Annotated[float | None, typer.Option(min=0)] = None,
            min_cpus: Annotated[float | None, typer.Option(min=0)] = None,
            host: Annotated[list[str] | None, typer.Option(
                "--host", help="Allowed host glob; repeatable.")] = None,
            server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Stop the run if active and queue a new attempt, optionally with new resources."""
    resources: dict[str, Any] = {k: v for k, v in (
        ("gpus", gpus), ("require_cuda", require_cuda), ("min_vram_gib", min_vram_gib),
        ("min_ram_gib", min_ram_gib), ("min_cpus", min_cpus)) if v is not None}
    if host:
        resources["allowed_hosts"] = list(host)
    with common.connect(server, token) as client:
        _done(client.restart(run_ref, resources=resources or None), "restarted", as_json)


@app.command()
def cancel(run_ref: RunArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Cancel a run that has not started (operator)."""
    with common.connect(server, token) as client:
        _done(client.cancel(run_ref), "cancelled", as_json)


@app.command()
def requeue(run_ref: RunArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Put a failed, stopped or cancelled run back in the queue (operator)."""
    with common.connect(server, token) as client:
        _done(client.requeue(run_ref), "requeued", as_json)


@app.command("rm")
def remove(run_ref: RunArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Delete a run with its metrics, logs and unreferenced blobs (operator)."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"refusing to delete run {run_ref} without --yes", EXIT_USAGE)
        typer.confirm(f"delete run {run_ref} and everything it recorded?", abort=True)
    with common.connect(server, token) as client:
        client.delete(run_ref)
    if as_json:
        common.print_json({"id": run_ref, "deleted": True})
    else:
        typer.echo(f"run {run_ref}: deleted")


@app.command()
def wait(run_ref: RunArg,
         until: Annotated[list[str] | None, typer.Option(
             "--until", help="Wanted status(es), comma-separated or repeated.")] = None,
         timeout: Annotated[float | None, typer.Option(min=0, help="Give up after S seconds.")
                            ] = None,
         interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
         server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Wait for a run; exit 0 when it reaches --until (default completed), 1 otherwise."""
    wanted = _statuses(until) or ["completed"]

    def report(run: Run) -> None:
        if not as_json:
            typer.echo(f"run {run.id}: {common.status_text(run)} {common.percent(run.progress)}")

    with common.connect(server, token) as client:
        try:
            final = client.wait(run_ref, until=wanted, timeout=timeout, on_update=report,
                                poll_s=interval)
        except TimeoutError as exc:
            raise fail(str(exc)) from None
    if as_json:
        common.print_json(final.raw)
    else:
        typer.echo(f"run {final.id}: {common.status_text(final)}")
    if final.status not in wanted:
        raise typer.Exit(EXIT_ERROR)
