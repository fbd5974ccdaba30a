"""``runyard edit RUN``: change a run's name, notes or tags after submission (docs/cli.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from runyard.cli import common
from runyard.cli.common import EXIT_USAGE, JsonOpt, ProjectOpt, RunArg, ServerOpt, TokenOpt, fail
from runyard.client.client import DEFAULT_SERVER


def edit(run_ref: RunArg,
         name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
         notes: Annotated[str | None, typer.Option("--notes", help="New notes ('' clears).")
                          ] = None,
         tag: Annotated[list[str] | None, typer.Option(
             "--tag", help="Add a tag (repeatable).")] = None,
         untag: Annotated[list[str] | None, typer.Option(
             "--untag", help="Remove a tag (repeatable).")] = None,
         clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag first."
                                                  )] = False,
         project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Change a run's name, notes or tags (its owner or an operator)."""
    if name is None and notes is None and not tag and not untag and not clear_tags:
        raise fail("nothing to change: give --name, --notes, --tag, --untag or --clear-tags",
                   EXIT_USAGE)
    with common.connect(server, token) as client:
        run = common.find(client, run_ref, project)
        tags = None
        if tag or untag or clear_tags:
            kept = [] if clear_tags else [t for t in run.tags if t not in (untag or ())]
            tags = list(dict.fromkeys([*kept, *(tag or ())]))
        edited = client.edit(run, name=name, notes=notes, tags=tags)
    if as_json:
        common.print_json(edited.raw)
    else:
        typer.echo(f"run {edited.id}: edited; name {edited.name}, tags "
                   f"{' '.join(edited.tags) or '-'}")
