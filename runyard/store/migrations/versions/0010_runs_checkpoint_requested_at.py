"""runs.checkpoint_requested_at: a pending request for the training loop to save a checkpoint

Set by ``POST /v1/runs/{id}/checkpoint`` (or a rule's ``checkpoint`` action) on a running
run, answered to the agent in every heartbeat while it is set, and cleared when the attempt
registers a checkpoint or ends. Nullable without a default: existing runs have none pending.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("checkpoint_requested_at", sa.Float(precision=53),
                                    nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE on both dialects (SQLite 3.35+): a batch rebuild of `runs` would
    # cascade to every attempt, event and metric through the foreign keys.
    op.drop_column("runs", "checkpoint_requested_at")
