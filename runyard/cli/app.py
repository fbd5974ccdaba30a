"""The Typer application and the one place that turns errors into exit codes."""

from __future__ import annotations

import logging
import os
import sys

import typer

from runyard import errors

app = typer.Typer(
    name="runyard",
    help="Runyard: schedule, supervise and watch ML training runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit codes (PRODUCT.md section 10).
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise."""
    typer.echo(f"runyard: {message}", err=True)
    return typer.Exit(code)


def run_app(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes become one line on stderr, never a traceback."""
    logging.basicConfig(
        level=os.environ.get("RUNYARD_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
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
