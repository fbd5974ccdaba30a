"""PostgreSQL: row locks, and ``SKIP LOCKED`` so concurrent claimers never wait on each other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from runyard.store.sql import SQLStore, SQLTransaction


class PostgresTransaction(SQLTransaction):
    lock_clause = {"read": False}
    skip_locked_clause = {"skip_locked": True}

    def _upsert(self, table: sa.Table, row: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        stmt = insert(table).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={k: stmt.excluded[k] for k in update})
        self.conn.execute(stmt)


class PostgresStore(SQLStore):
    transaction_class = PostgresTransaction
