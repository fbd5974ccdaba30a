"""signin_codes: one-time sign-in links, each exchanged once for a token before it expires

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TIME = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "signin_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME),
        sa.Column("token_name", sa.String(200)),
        sa.PrimaryKeyConstraint("code_hash", name="pk_signin_codes"),
    )


def downgrade() -> None:
    op.drop_table("signin_codes")
