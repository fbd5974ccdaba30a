"""``runyard ls`` and ``runyard show``: runs as a table, and one run in detail (docs/cli.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runyard.cli import common, fit
from runyard.cli.common import JsonOpt, ProjectOpt, ReadServerOpt, RunArg, TokenOpt
from runyard.client import Run

#: ``runyard ls``'s columns; on a narrow terminal the host goes first, then the age, the
#: metrics (first shortened) and the progress; id, name and status always stay whole.
RUN_COLUMNS = (fit.Column("id"), fit.Column("name", cut_last=True), fit.Column("status"),
               fit.Column("progress", rank=1), fit.Column("host", rank=4),
               fit.Column("metrics", rank=2, items=True), fit.Column("age", rank=3))


def _run_row(run: Run) -> list[fit.Cell]:
    p = run.progress
    pct = common.percent(p)
    if p is not None and p.eta_seconds is not None and not run.is_terminal:
        pct += f" eta {common.duration(p.eta_seconds)}"
    return [run.id, run.name or "-", common.status_cell(run), pct,
            run.host_id or "-", common.metric_items(p) or ["-"], common.ago(run.created_at)]


def list_runs(
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="Only these statuses (comma-separated or repeated).")] = None,
    project: Annotated[list[str] | None, typer.Option(
        help="Only these projects (repeatable).")] = None,
    name: Annotated[list[str] | None, typer.Option(
        "--name", help="Name pattern, SQL ILIKE (% any, _ one character); repeatable.")] = None,
    host: Annotated[list[str] | None, typer.Option(help="Only runs on these hosts.")] = None,
    version: Annotated[list[str] | None, typer.Option(help="Only these versions.")] = None,
    blueprint: Annotated[list[str] | None, typer.Option(help="Only these blueprints.")] = None,
    owner: Annotated[list[str] | None, typer.Option(help="Only runs of these owners.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="Only runs carrying this tag (repeat: every one).")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Only runs requiring label k=v (repeat: every one).")] = None,
    sort: Annotated[list[str] | None, typer.Option(
        "--sort", help="key:asc|desc, repeatable (default created_at:desc), e.g. "
                       "--sort project:asc --sort created_at:desc.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows per page.")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every matching run.")] = False,
    wide: Annotated[bool, typer.Option(
        "--wide", "-w", help="Every column and every metric, cut nowhere (lines may wrap).")
                    ] = False,
    server: ReadServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """List runs, newest first: id, name, status, progress and ETA, host, metrics, age.

    The table fits the terminal: columns are left out (host, then age, metrics, progress)
    before anything is cut; --wide shows them all."""
    labels: dict[str, str] = {}
    for pair in label or ():
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise common.fail(f"--label: expected key=value, got {pair!r}", common.EXIT_USAGE)
        labels[key] = value
    filters: dict[str, Any] = {"status": common.statuses(status), "project": project or None,
                               "name_like": name or None, "host": host or None,
                               "version": version or None, "blueprint": blueprint or None,
                               "owner": owner or None, "tags": tag or None,
                               "labels": labels or None, "sort": sort or None}
    with common.reading(server, token) as client:
        if all_pages:
            runs = list(client.iter_runs(page_size=limit, **filters))
            more = None
        else:
            page = client.list_runs(limit=limit, **filters)
            runs, more = list(page.items), page.next
    if as_json:
        common.print_json({"items": [r.raw for r in runs], "next_cursor": more,
                           "next_after_id": runs[-1].id if more and runs else None})
        return
    if not runs:
        typer.echo("no runs")
    else:
        table, width = fit.table(RUN_COLUMNS, [_run_row(r) for r in runs],
                                 width=None if wide else fit.terminal_width())
        fit.console(width).print(table)
    if more is not None:
        Console(soft_wrap=True).print("[dim]more runs: --limit, or --all[/dim]")


def show(run_ref: RunArg, events: Annotated[int, typer.Option(
            min=0, help="How many of the last events to show.")] = 10,
         project: ProjectOpt = None, server: ReadServerOpt = None,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Details of one run: status, progress, attempts, last events; for a queued run, why."""
    with common.reading(server, token) as client:
        run = common.find(client, run_ref, project)
        recent = list(client.get_events(run, limit=events, order="desc").items) if events else []
        explain = run.explain
        if run.status == "queued" and explain is None:
            explain = client.explain(run)
    if as_json:
        common.print_json({"run": run.raw, "events": [e.raw for e in recent],
                           "explain": explain})
        return
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    cmd = " ".join(run.command) if run.command else "-"
    for key, value in (
        ("run", run.id), ("name", run.name), ("project", run.project),
        ("tags", " ".join(run.tags)), ("notes", run.notes),
        ("status", common.status_cell(run)),
        ("blueprint", run.blueprint), ("command", cmd), ("host", run.host_id),
        ("executor", run.executor), ("launcher", run.launcher), ("slurm", run.slurm),
        ("job id", run.external_id), ("nodes", ", ".join(run.nodes) if run.nodes else None),
        ("attempt", f"{run.attempt} of {run.max_attempts}"),
        ("created", f"{common.iso(run.created_at)} ({common.ago(run.created_at)})"),
        ("started", common.iso(run.started_at)), ("ended", common.iso(run.ended_at)),
        ("exit code", run.exit_code), ("config", run.config),
        ("constraints", {k: v for k, v in (run.constraints or {}).items() if v}),
        ("workdir", ran_in(run)), ("artifacts", run.artifact_store),
        ("archived", "yes" if run.archived else "no"),
    ):
        if value in (None, "", {}):
            value = "-"
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        head.add_row(key, value if isinstance(value, Text) else str(value))
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # a pipe or a file: long paths and details stay whole
        console = fit.unbounded()
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
        placed = any(a.external_id for a in run.attempts)
        table = Table("attempt", "host", *(("job id", "nodes") if placed else ()), "claimed",
                      "ended", "reason", "exit", box=None, title="attempts",
                      title_justify="left")
        for a in run.attempts:
            where = (a.external_id or "-", ", ".join(a.nodes or ()) or "-") if placed else ()
            table.add_row(str(a.number), a.host_id or "-", *where,
                          common.iso(a.claimed_at) or "-",
                          common.iso(a.ended_at) or ("active" if a.active else "-"),
                          a.termination_reason or "-", common.number(
                              None if a.exit_code is None else float(a.exit_code)))
        console.print(table)
    rules = run.raw.get("rules") or []
    if rules:
        from runyard.cli.rules import summary

        table = Table("rule", "source", "condition", "hits", "last hit", box=None,
                      title="rules", title_justify="left")
        for r in rules:
            last = r.get("last_hit") or {}
            hit_at = f"step {last['step']}" if last.get("step") is not None else ""
            table.add_row(r["name"], r["source"], summary(r), str(r.get("hits") or 0),
                          hit_at or ("-" if not last else "yes"))
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


def ran_in(run: Run) -> str | None:
    """Where the run's latest attempt ran, as its holder reported it; else the work directory
    the run asked for (an agent's runs: relative to the agent's directory)."""
    for attempt in reversed(run.attempts or ()):
        if attempt.workdir:
            return attempt.workdir
    return run.workdir


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
