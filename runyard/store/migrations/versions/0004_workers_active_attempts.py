"""workers.active_attempts: the count of a worker's active attempts, kept by triggers

Every claim read that count, and counting a host's active attempts costs as many index entries
as it has of them: a worker with hundreds of slots made each claim slower than the last. The
triggers keep the column right whatever changes an attempt (claims, ends, deletes, imports).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE = [
    """CREATE TRIGGER attempts_active_insert AFTER INSERT ON attempts WHEN NEW.active
    BEGIN
        UPDATE workers SET active_attempts = active_attempts + 1 WHERE host_id = NEW.host_id;
    END""",
    """CREATE TRIGGER attempts_active_update AFTER UPDATE OF active, host_id ON attempts
    WHEN OLD.active IS NOT NEW.active OR OLD.host_id IS NOT NEW.host_id
    BEGIN
        UPDATE workers SET active_attempts = active_attempts - 1
            WHERE OLD.active AND host_id = OLD.host_id;
        UPDATE workers SET active_attempts = active_attempts + 1
            WHERE NEW.active AND host_id = NEW.host_id;
    END""",
    """CREATE TRIGGER attempts_active_delete AFTER DELETE ON attempts WHEN OLD.active
    BEGIN
        UPDATE workers SET active_attempts = active_attempts - 1 WHERE host_id = OLD.host_id;
    END""",
]
_SQLITE_DROP = ["DROP TRIGGER attempts_active_insert", "DROP TRIGGER attempts_active_update",
                "DROP TRIGGER attempts_active_delete"]

_POSTGRES = [
    """CREATE FUNCTION runyard_attempts_active() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.active = NEW.active AND OLD.host_id = NEW.host_id THEN
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' AND OLD.active THEN
            UPDATE workers SET active_attempts = active_attempts - 1
                WHERE host_id = OLD.host_id;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.active THEN
            UPDATE workers SET active_attempts = active_attempts + 1
                WHERE host_id = NEW.host_id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER attempts_active AFTER INSERT OR DELETE OR UPDATE OF active, host_id
    ON attempts FOR EACH ROW EXECUTE FUNCTION runyard_attempts_active()""",
]
_POSTGRES_DROP = ["DROP TRIGGER attempts_active ON attempts",
                  "DROP FUNCTION runyard_attempts_active()"]


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active_attempts", sa.Integer(), server_default="0",
                                      nullable=False))
    op.execute("UPDATE workers SET active_attempts = (SELECT count(*) FROM attempts "
               "WHERE attempts.host_id = workers.host_id AND attempts.active)")
    sqlite = op.get_bind().dialect.name == "sqlite"
    for ddl in _SQLITE if sqlite else _POSTGRES:
        op.execute(ddl)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for ddl in _SQLITE_DROP if sqlite else _POSTGRES_DROP:
        op.execute(ddl)
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("active_attempts")
