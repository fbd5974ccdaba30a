"""runs.labels_key: required labels as one string, in the claim index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CLAIM_COLS: list[str | sa.TextClause] = [
    "status", sa.text("priority DESC"), "created_at", "id", "gpus", "min_vram_gib", "min_ram_gib",
    "min_cpus", "require_cuda", "prefer_cuda"]


def _labels_key(labels: dict[str, object]) -> str:
    # As runyard.eligibility.labels_key at the time of this revision (frozen here on purpose).
    if not labels:
        return ""
    return json.dumps({k: str(v) for k, v in sorted(labels.items())}, separators=(",", ":"),
                      ensure_ascii=False)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("labels_key", sa.Text(), server_default="",
                                      nullable=False))
        batch_op.drop_index("ix_runs_claim")
        batch_op.create_index("ix_runs_claim", [*_CLAIM_COLS, "labels_key"], unique=False)
    conn = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("constraints", sa.JSON),
                    sa.column("labels_key", sa.Text))
    for run_id, constraints in conn.execute(sa.select(runs.c.id, runs.c.constraints)):
        labels = (constraints or {}).get("labels") if isinstance(constraints, dict) else None
        if labels:
            conn.execute(runs.update().where(runs.c.id == run_id)
                         .values(labels_key=_labels_key(labels)))


def downgrade() -> None:
    # Two steps: SQLite rebuilds the table for drop_column, and the rebuild cannot carry an
    # index on an expression (priority DESC).
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_claim")
        batch_op.drop_column("labels_key")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_claim", _CLAIM_COLS, unique=False)
