"""The Typer application: every command registered here, and the one place that turns errors
into exit codes (docs/cli.md)."""

from __future__ import annotations

import logging
import os
import sys

import typer

from runyard import defaults, errors
from runyard.cli import (
    agent,
    db,
    demo,
    edit,
    lifecycle,
    manifest,
    notify,
    outputs,
    reading,
    rules,
    server,
    submit,
    supervise,
    sync,
    tokens,
    up,
    watch,
    workers,
)
from runyard.cli.common import EXIT_ERROR, EXIT_OK

app = typer.Typer(
    name="runyard",
    help="Runyard: schedule, supervise and watch ML training runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# `runyard --help` lists the commands in this order, then the groups in theirs.
app.command("up")(up.up)
app.command("demo")(demo.demo)
app.command("blueprints")(manifest.blueprints)
app.command(cls=submit.ArgvCommand)(submit.submit)
app.command("ls")(reading.list_runs)
app.command()(reading.show)
app.command()(watch.watch)
app.command()(outputs.logs)
app.command()(outputs.metrics)
app.command()(outputs.checkpoints)
app.command()(edit.edit)
app.command()(lifecycle.stop)
app.command()(lifecycle.checkpoint)
app.command()(lifecycle.restart)
app.command()(lifecycle.preempt)
app.command()(lifecycle.cancel)
app.command()(lifecycle.requeue)
app.command("rm")(lifecycle.remove)
app.command()(lifecycle.wait)
app.command("server")(server.server)
app.command("supervise")(supervise.supervise)
app.command("sync")(sync.sync_cmd)
app.command("notifications")(notify.notifications)

app.add_typer(agent.agent_app, name="agent")
app.add_typer(db.db_app, name="db")
app.add_typer(manifest.manifest_app, name="manifest")
app.add_typer(rules.rules_app, name="rules")
app.add_typer(notify.channels_app, name="channels")
app.add_typer(tokens.token_app, name="token")
app.add_typer(workers.workers_app, name="workers")


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes become one line on stderr, never a traceback."""
    logging.basicConfig(
        level=os.environ.get("RUNYARD_LOG_LEVEL", "WARNING").upper(),
        format=defaults.LOG_FORMAT,
    )
    try:
        # Outside standalone mode click returns a command's exit code instead of raising it.
        rv = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("runyard: interrupted", err=True)
        return 130
    except errors.ValidationError as exc:
        typer.echo(f"runyard: {exc.message}", err=True)
        for extra in exc.errors[1:]:
            typer.echo(f"runyard:   {extra.get('text') or extra.get('message')}", err=True)
        return EXIT_ERROR
    except errors.RunyardError as exc:
        typer.echo(f"runyard: {exc.message}", err=True)
        return EXIT_ERROR
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show(file=sys.stderr)
            return int(code)
        raise
    return rv if isinstance(rv, int) else EXIT_OK
