"""Commands that move a run through its lifecycle: stop, checkpoint, restart, preempt, cancel,
requeue, rm, and wait for a status (docs/lifecycle.md, docs/cli.md)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from runyard.cli import common
from runyard.cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    JsonOpt,
    ProjectOpt,
    ReadServerOpt,
    RunArg,
    ServerOpt,
    TokenOpt,
    fail,
)
from runyard.client import Run
from runyard.client.client import DEFAULT_SERVER


def _done(run: Run, verb: str, as_json: bool) -> None:
    if as_json:
        common.print_json(run.raw)
    else:
        typer.echo(f"run {run.id}: {verb}; now {run.status}")


def stop(run_ref: RunArg,
         grace: Annotated[float, typer.Option(min=0, help="Seconds between SIGTERM and SIGKILL.")
                          ] = 30.0,
         project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a run gracefully (stop file and SIGTERM, SIGKILL after the grace period)."""
    with common.connect(server, token) as client:
        run = common.find(client, run_ref, project)
        _done(client.stop(run, grace=grace), "stop requested", as_json)


def checkpoint(run_ref: RunArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """Ask a running run's training loop to save a checkpoint (cleared when it registers one)."""
    with common.connect(server, token) as client:
        _done(client.request_checkpoint(run_ref), "checkpoint requested", as_json)


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
            project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
            token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the run if active and queue a new attempt, optionally with new resources."""
    resources: dict[str, Any] = {k: v for k, v in (
        ("gpus", gpus), ("require_cuda", require_cuda), ("min_vram_gib", min_vram_gib),
        ("min_ram_gib", min_ram_gib), ("min_cpus", min_cpus)) if v is not None}
    if host:
        resources["allowed_hosts"] = list(host)
    with common.connect(server, token) as client:
        run = common.find(client, run_ref, project)
        _done(client.restart(run, resources=resources or None), "restarted", as_json)


def preempt(run_ref: RunArg,
            grace: Annotated[float, typer.Option(
                min=0, help="Seconds to save a checkpoint between SIGTERM and SIGKILL.")
            ] = 30.0,
            project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
            token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Stop an active run so that it is requeued and resumes from its checkpoint
    (operator)."""
    with common.connect(server, token) as client:
        _done(client.preempt(common.find(client, run_ref, project), grace=grace),
              "preemption requested", as_json)


def cancel(run_ref: RunArg, project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
           token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a run that has not started (operator)."""
    with common.connect(server, token) as client:
        _done(client.cancel(common.find(client, run_ref, project)), "cancelled", as_json)


def requeue(run_ref: RunArg, project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
            token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Put a failed, stopped or cancelled run back in the queue (operator)."""
    with common.connect(server, token) as client:
        _done(client.requeue(common.find(client, run_ref, project)), "requeued", as_json)


def remove(run_ref: RunArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
           project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
           token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Delete a run with its metrics, logs, unreferenced blobs and its files in the server's
    data directory (operator; a user its own local runs)."""
    if not yes and not sys.stdin.isatty():
        raise fail(f"refusing to delete run {run_ref} without --yes", EXIT_USAGE)
    with common.connect(server, token) as client:
        run = common.find(client, run_ref, project)
        if not yes:
            typer.confirm(f"delete run {run.id} ({run.name}) and everything it recorded?",
                          abort=True)
        client.delete(run)
    if as_json:
        common.print_json({"id": run.id, "deleted": True})
    else:
        typer.echo(f"run {run.id}: deleted")


def wait(run_ref: RunArg,
         until: Annotated[list[str] | None, typer.Option(
             "--until", help="Wanted status(es), comma-separated or repeated.")] = None,
         timeout: Annotated[float | None, typer.Option(min=0, help="Give up after S seconds.")
                            ] = None,
         interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
         project: ProjectOpt = None, server: ReadServerOpt = None,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Wait for a run; exit 0 when it reaches --until (default completed), 1 otherwise."""
    wanted = common.statuses(until) or ["completed"]

    def report(run: Run) -> None:
        if not as_json:
            typer.echo(f"run {run.id}: {common.status_text(run)} {common.percent(run.progress)}")

    with common.reading(server, token) as client:
        try:
            run = common.find(client, run_ref, project)
            final = client.wait(run, until=wanted, timeout=timeout, on_update=report,
                                poll_s=interval)
        except TimeoutError as exc:
            raise fail(str(exc)) from None
    if as_json:
        common.print_json(final.raw)
    else:
        typer.echo(f"run {final.id}: {common.status_text(final)}")
    if final.status not in wanted:
        raise typer.Exit(EXIT_ERROR)
