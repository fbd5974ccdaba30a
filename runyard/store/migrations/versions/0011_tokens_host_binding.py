"""tokens.hosts, tokens.max_hosts: a worker token is bound to the hosts it may act as

A worker token may register and claim only as a host its binding matches
(docs/security.md). Worker tokens stored before keep working where they are used: each is
bound to the hosts it has registered (the workers whose ``token_name`` it is); one that has
registered none binds itself to the first host it claims as, as a new token does.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("hosts", sa.Text(), nullable=True))
    op.add_column("tokens", sa.Column("max_hosts", sa.Integer(), nullable=True))
    conn = op.get_bind()
    found: dict[str, list[str]] = {}
    for name, host_id in conn.execute(sa.text(
            "SELECT t.name, w.host_id FROM tokens t JOIN workers w ON w.token_name = t.name "
            "WHERE t.role = 'worker' ORDER BY t.name, w.host_id")):
        found.setdefault(name, []).append(host_id)
    for name, hosts in found.items():
        conn.execute(sa.text("UPDATE tokens SET hosts = :hosts WHERE name = :name"),
                     {"hosts": ",".join(hosts), "name": name})


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("max_hosts")
        batch.drop_column("hosts")
