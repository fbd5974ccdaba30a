"""``runyard db``: database maintenance."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from runyard.store import Store

db_app = typer.Typer(help="Database maintenance (migrations).", no_args_is_help=True)

DbOption = typer.Option(
    None, "--db", envvar="RUNYARD_DB",
    help="Database URL (sqlite:///path or postgresql+psycopg://...); default: the embedded "
         "SQLite database under the data directory.")


@contextmanager
def _opened(db: str | None) -> Iterator[Store]:
    """The database at ``db`` (default: the embedded one), left at its current revision."""
    from runyard.store import open_store

    store = open_store(db, upgrade=False)
    try:
        yield store
    finally:
        store.close()


@db_app.command("upgrade")
def upgrade(db: str | None = DbOption,
            revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply schema migrations (the server also does this when it starts)."""
    with _opened(db) as store:
        store.upgrade(revision)
        typer.echo(f"{store.url}: at revision {store.current_revision()}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base or -1."),
              db: str | None = DbOption) -> None:
    """Revert schema migrations down to REVISION (destroys data in dropped tables)."""
    with _opened(db) as store:
        store.downgrade(revision)
        typer.echo(f"{store.url}: at revision {store.current_revision()}")


@db_app.command("current")
def current(db: str | None = DbOption) -> None:
    """Print the schema revision of the database."""
    with _opened(db) as store:
        typer.echo(store.current_revision() or "empty (no migrations applied)")
