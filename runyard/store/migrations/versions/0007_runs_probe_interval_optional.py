"""runs.probe_interval_s: nullable, no default (NULL: the run names none, its agent's applies)

Every run stored an interval, the default when it named none, so the one its agent was
started with (``runyard agent --probe-interval-s``) never applied. Runs stored before keep the
value they have: which of them named it cannot be told any more.

SQLite cannot drop a NOT NULL constraint in place, and rebuilding ``runs`` is out of the
question: with foreign keys on (and the pragma cannot be turned off inside the migration's
transaction), dropping the old table would cascade to every attempt, event, metric and log of
every run. SQLite documents a rewrite of the table's definition in ``sqlite_schema`` for
exactly this kind of change (removing a NOT NULL constraint or a default, which leaves the
stored rows as they are): https://www.sqlite.org/lang_altertable.html#otheralter

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_REQUIRED = "probe_interval_s FLOAT DEFAULT '1' NOT NULL"
_OPTIONAL = "probe_interval_s FLOAT"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite_column(_REQUIRED, _OPTIONAL)
    else:
        op.alter_column("runs", "probe_interval_s", existing_type=sa.Float(), nullable=True,
                        server_default=None)


def downgrade() -> None:
    op.execute("UPDATE runs SET probe_interval_s = 1 WHERE probe_interval_s IS NULL")
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_sqlite_column(_OPTIONAL, _REQUIRED)
    else:
        op.alter_column("runs", "probe_interval_s", existing_type=sa.Float(), nullable=False,
                        server_default="1")


def _rewrite_sqlite_column(old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the stored ``CREATE TABLE runs``, as SQLite's procedure
    says: in the open transaction, with the schema version bumped so that every connection
    reads the new definition, then checked."""
    conn = op.get_bind()
    sql = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").scalar_one()
    if sql.count(old) != 1:
        raise RuntimeError(f"runs.probe_interval_s: expected {old!r} in the table's definition")
    version = int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one())
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        conn.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'runs'",
            (sql.replace(old, new),))
        conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise RuntimeError(f"runs.probe_interval_s: integrity check failed: {problems}")
