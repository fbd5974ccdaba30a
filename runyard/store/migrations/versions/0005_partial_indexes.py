"""runs, attempts: the claim index holds queued runs only and the lease index active attempts
only; ix_attempts_host_active goes

A full index keeps an entry for every row and moves it when the indexed status changes: a
claim moved its run from the queued part of ix_runs_claim to the claimed part (two pages
written), and every later status change moved it again. Partial, an entry is taken out once
and never touched after. The count of a host's active attempts is a column now (0004), so
the host index only served registering a new worker, which reads the active attempts instead.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CLAIM_COLS: list[str | sa.TextClause] = [
    sa.text("priority DESC"), "created_at", "id", "gpus", "min_vram_gib", "min_ram_gib",
    "min_cpus", "require_cuda", "prefer_cuda", "labels_key"]


def upgrade() -> None:
    op.drop_index("ix_runs_claim", table_name="runs")
    op.create_index("ix_runs_claim", "runs", ["status", *_CLAIM_COLS],
                    sqlite_where=sa.text("status = 'queued'"),
                    postgresql_where=sa.text("status = 'queued'"))
    op.drop_index("ix_attempts_active_lease", table_name="attempts")
    op.create_index("ix_attempts_active_lease", "attempts", ["lease_expires_at"],
                    sqlite_where=sa.text("active = 1"), postgresql_where=sa.text("active"))
    op.drop_index("ix_attempts_host_active", table_name="attempts")


def downgrade() -> None:
    op.create_index("ix_attempts_host_active", "attempts", ["host_id", "active"])
    op.drop_index("ix_attempts_active_lease", table_name="attempts")
    op.create_index("ix_attempts_active_lease", "attempts", ["active", "lease_expires_at"])
    op.drop_index("ix_runs_claim", table_name="runs")
    op.create_index("ix_runs_claim", "runs", ["status", *_CLAIM_COLS])
