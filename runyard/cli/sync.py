"""``runyard sync [--server URL]``: upload runs recorded locally (no server at the time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runyard import local
from runyard.cli import common
from runyard.cli.common import JsonOpt, ServerOpt, TokenOpt
from runyard.client.client import DEFAULT_SERVER
from runyard.client.http import Http

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", envvar="RUNYARD_DATA_DIR", show_default=False,
    help="Where the local runs are (default: XDG data dir, else ~/.runyard).")]


def sync_cmd(server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
             data_dir: DataDirOpt = None,
             dry_run: Annotated[bool, typer.Option("--dry-run",
                                                   help="List what would be sent.")] = False,
             as_json: JsonOpt = False) -> None:
    """Upload ended local runs (embedded store and run files) and leftover HTTP spools;
    archive the artifacts of the runs that asked for it.

    Idempotent: runs keep their ids, so running it twice creates nothing new.
    """
    from runyard.sync import uploader

    directory = (data_dir or local.data_dir()).expanduser()
    url = server.rstrip("/")
    http = Http(url, common.resolve_token(url, token))
    try:
        report = uploader.sync(directory, http, dry_run=dry_run)
    finally:
        http.close()
    if as_json:
        common.print_json(report.to_json())
        return
    verb = "would upload" if dry_run else "uploaded"
    typer.echo(f"{verb} {len(report.created)} new run(s), resent {len(report.completed)}, "
               f"{len(report.skipped)} already synced; {report.points} point(s), "
               f"{report.checkpoints} checkpoint(s); {len(report.spools_sent)} spool(s) sent; "
               f"{len(report.archived)} run(s) archived")
    for line in report.spools_dropped:
        typer.echo(f"runyard: spool dropped: {line}", err=True)
    for line in report.problems:
        typer.echo(f"runyard: {line}", err=True)
    if report.problems:
        raise typer.Exit(1)
