"""rules: project and server-wide rules, each run's rule state, runs.rules and runs.rule_hits

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_TIME = sa.Float(precision=53)


def upgrade() -> None:
    # Plain ALTER TABLE: a batch rebuild of `runs` on SQLite would cascade to every row
    # that refers to it (see 0007).
    op.add_column("runs", sa.Column("rules", sa.JSON(none_as_null=True)))
    op.add_column("runs", sa.Column("rule_hits", sa.Integer, nullable=False,
                                    server_default="0"))
    op.create_table(
        "rules",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rules"),
        sa.UniqueConstraint("project", "name", name="uq_rules_project_name"),
    )
    op.create_table(
        "rule_states",
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("rule_key", sa.String(100), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("feed", sa.String(8)),
        sa.Column("last_step", sa.BigInteger),
        sa.Column("best", sa.Float(precision=53)),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fired", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_hit_at", _TIME),
        sa.Column("last_hit", sa.JSON()),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name="fk_rule_states_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "rule_key", name="pk_rule_states"),
    )


def downgrade() -> None:
    op.drop_table("rule_states")
    op.drop_table("rules")
    op.drop_column("runs", "rule_hits")  # ALTER TABLE ... DROP COLUMN (SQLite 3.35+)
    op.drop_column("runs", "rules")
