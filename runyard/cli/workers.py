"""``runyard workers [drain|resume|rm HOST]``: the fleet as the server sees it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runyard.cli import common
from runyard.cli.common import JsonOpt, ServerOpt, TokenOpt
from runyard.client import Worker
from runyard.client.client import DEFAULT_SERVER

workers_app = typer.Typer(help="List workers; drain, resume or remove one.",
                          invoke_without_command=True)

HostArg = Annotated[str, typer.Argument(help="The worker's host id.", show_default=False)]


def _gpus(worker: Worker) -> str:
    gpus = worker.capabilities.get("gpus") or []
    if not gpus:
        return "-"
    names = {str(g.get("name") or "gpu") for g in gpus if isinstance(g, dict)}
    return f"{len(gpus)}x {', '.join(sorted(names))}"


@workers_app.callback()
def workers(ctx: typer.Context, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
            as_json: JsonOpt = False) -> None:
    """Registered workers: capabilities, slots in use, last heartbeat, drained or not."""
    if ctx.invoked_subcommand is not None:
        return
    with common.connect(server, token) as client:
        found = client.list_workers()
    if as_json:
        common.print_json({"items": [w.raw for w in found]})
        return
    if not found:
        typer.echo("no workers registered")
        return
    table = Table("host", "executor", "state", "slots", "cpus", "ram GiB", "gpus", "labels",
                  "last seen", box=None)
    for w in found:
        caps = w.capabilities
        state = "drained" if w.drained else ("alive" if w.alive is not False else "offline")
        style = {"drained": "yellow", "alive": "green", "offline": "red"}[state]
        labels = caps.get("labels") or {}
        table.add_row(w.host_id, w.executor, Text(state, style=style),
                      f"{w.active_attempts}/{w.slots if w.slots is not None else '-'}",
                      common.number(caps.get("cpus")), common.number(caps.get("ram_gib")),
                      _gpus(w), ", ".join(f"{k}={v}" for k, v in labels.items()) or "-",
                      common.ago(w.last_seen_at))
    console = Console(soft_wrap=True)
    console.print(table)
    # What an executor that runs attempts elsewhere has in flight, and where (Slurm jobs).
    for w in found:
        jobs = [c for c in w.raw.get("current") or []
                if isinstance(c, dict) and w.executor != "local"]
        if jobs:
            console.print(f"{w.host_id} ({w.executor}), in flight:", markup=False)
        for c in jobs:
            nodes = ", ".join(str(n) for n in c.get("nodes") or ()) or "-"
            job = c.get("external_id") or "not submitted yet"
            console.print(f"  {c.get('run_id')} {c.get('name') or ''} {c.get('status')}: "
                          f"job {job} on {nodes}", markup=False, highlight=False)


@workers_app.command()
def drain(host: HostArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
          as_json: JsonOpt = False) -> None:
    """Let HOST finish what it runs and claim nothing new (operator)."""
    with common.connect(server, token) as client:
        _done(host, client.drain(host), "drained", as_json)


@workers_app.command()
def resume(host: HostArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Let a drained HOST claim runs again (operator)."""
    with common.connect(server, token) as client:
        _done(host, client.resume(host), "resumed", as_json)


@workers_app.command("rm")
def remove(host: HostArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Forget HOST (operator); refused while it holds active attempts. A worker that claims
    again registers again."""
    with common.connect(server, token) as client:
        _done(host, client.remove_worker(host), "removed", as_json)


def _done(host: str, result: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        common.print_json(result)
    else:
        typer.echo(f"worker {host}: {verb}")
