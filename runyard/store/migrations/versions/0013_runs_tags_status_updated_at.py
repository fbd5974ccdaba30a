"""runs.tags (a JSON list, default empty) and runs.status_updated_at (when the status last
changed; existing runs take their updated_at, the nearest value known)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite: see 0007 for why that must be avoided).
    op.add_column("runs", sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("runs", sa.Column("status_updated_at", sa.Float(precision=53)))
    op.execute("UPDATE runs SET status_updated_at = updated_at")


def downgrade() -> None:
    with op.batch_alter_table("runs", recreate="never") as batch:
        batch.drop_column("status_updated_at")
        batch.drop_column("tags")
