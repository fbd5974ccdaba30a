"""runs: drop ix_runs_status_id (ix_runs_status_created serves every query by status)

Every claim and every status change moved an entry of this index too: about two of the
sixteen pages a claim writes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_runs_status_id", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_status_id", "runs", ["status", "id"], unique=False)
