"""``runyard db``: database maintenance."""

from __future__ import annotations

import typer

db_app = typer.Typer(help="Database maintenance (migrations).", no_args_is_help=True)

DbOption = typer.Option(
    None, "--db", envvar="RUNYARD_DB",
    help="Database URL (sqlite:///path or postgresql+psycopg://...); default: the embedded "
         "SQLite database under the data directory.")


@db_app.command("upgrade")
def upgrade(db: str | None = DbOption,
            revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply schema migrations (the server also does this when it starts)."""
    from runyard.store import default_url, open_store

    store = open_store(db or default_url(), upgrade=False)
    try:
        store.upgrade(revision)
        typer.echo(f"{store.url}: at revision {store.current_revision()}")
    finally:
        store.close()


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision, e.g. base or -1."),
              db: str | None = DbOption) -> None:
    """Revert schema migrations down to REVISION (destroys data in dropped tables)."""
    from runyard.store import default_url, open_store

    store = open_store(db or default_url(), upgrade=False)
    try:
        store.downgrade(revision)
        typer.echo(f"{store.url}: at revision {store.current_revision()}")
    finally:
        store.close()


@db_app.command("current")
def current(db: str | None = DbOption) -> None:
    """Print the schema revision of the database."""
    from runyard.store import default_url, open_store

    store = open_store(db or default_url(), upgrade=False)
    try:
        typer.echo(store.current_revision() or "empty (no migrations applied)")
    finally:
        store.close()
