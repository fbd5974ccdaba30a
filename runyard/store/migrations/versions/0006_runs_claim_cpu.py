"""runs: ix_runs_claim_cpu, the claim index of the queued runs that need no CUDA

Runs that need CUDA wait for the GPU hosts and gather at the head of the queue; a claim by a
host without CUDA stepped over every one of them in ix_runs_claim. Its own partial index
starts at the first run it may take.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_claim_cpu", "runs",
        ["status", sa.text("priority DESC"), "created_at", "id", "gpus", "min_vram_gib",
         "min_ram_gib", "min_cpus", "prefer_cuda", "labels_key"],
        sqlite_where=sa.text("status = 'queued' AND require_cuda = 0"),
        postgresql_where=sa.text("status = 'queued' AND require_cuda = false"))


def downgrade() -> None:
    op.drop_index("ix_runs_claim_cpu", table_name="runs")
