"""Executors: runs' launcher and Slurm options, attempts' placement and credential, and the
executor in the claim indexes

``runs.launcher`` and ``runs.slurm`` hold a Slurm run's launcher and options;
``attempts.external_id`` and ``attempts.nodes`` where an executor placed an attempt (the
Slurm job id, its nodes); ``attempts.token_hash`` the sha256 of the credential scoped to that
one attempt (docs/security.md). The claim indexes carry ``executor``, so a claim steps over
the runs of other executors inside the index.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_QUEUED = "status = 'queued'"
_Col = str | sa.TextClause
_HEAD: list[_Col] = ["status", sa.text("priority DESC"), "created_at", "id", "gpus",
                     "min_vram_gib", "min_ram_gib", "min_cpus"]
_CLAIM: list[_Col] = [*_HEAD, "require_cuda", "prefer_cuda", "labels_key"]
_CLAIM_CPU: list[_Col] = [*_HEAD, "prefer_cuda", "labels_key"]


def _claim_indexes(extra: list[_Col]) -> None:
    op.create_index("ix_runs_claim", "runs", _CLAIM + extra,
                    sqlite_where=sa.text(_QUEUED), postgresql_where=sa.text(_QUEUED))
    op.create_index("ix_runs_claim_cpu", "runs", _CLAIM_CPU + extra,
                    sqlite_where=sa.text(f"{_QUEUED} AND require_cuda = 0"),
                    postgresql_where=sa.text(f"{_QUEUED} AND require_cuda = false"))


def upgrade() -> None:
    op.add_column("runs", sa.Column("launcher", sa.String(16)))
    op.add_column("runs", sa.Column("slurm", sa.JSON()))
    op.add_column("attempts", sa.Column("external_id", sa.String(200)))
    op.add_column("attempts", sa.Column("nodes", sa.JSON()))
    op.add_column("attempts", sa.Column("token_hash", sa.String(64)))
    op.create_index("ix_attempts_token_hash", "attempts", ["token_hash"], unique=True)
    op.drop_index("ix_runs_claim", table_name="runs")
    op.drop_index("ix_runs_claim_cpu", table_name="runs")
    _claim_indexes(["executor"])


def downgrade() -> None:
    op.drop_index("ix_runs_claim", table_name="runs")
    op.drop_index("ix_runs_claim_cpu", table_name="runs")
    _claim_indexes([])
    op.drop_index("ix_attempts_token_hash", table_name="attempts")
    for table, column in (("attempts", "token_hash"), ("attempts", "nodes"),
                          ("attempts", "external_id"), ("runs", "slurm"),
                          ("runs", "launcher")):
        op.drop_column(table, column)
