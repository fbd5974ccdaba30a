"""attempts.workdir: the directory the attempt's process ran in, as its holder reported it
(a run's own ``workdir`` is what it asked for, often relative to the agent's directory)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table rebuild on SQLite: see 0007 for why that must be avoided).
    op.add_column("attempts", sa.Column("workdir", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("attempts", recreate="never") as batch:
        batch.drop_column("workdir")
