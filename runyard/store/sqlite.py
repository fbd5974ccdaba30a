"""SQLite: one writer at a time (``BEGIN IMMEDIATE``), so no row locks are needed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from runyard.store.sql import SQLStore, SQLTransaction


class SQLiteTransaction(SQLTransaction):
    def _upsert(self, table: sa.Table, row: Mapping[str, Any], keys: list[str],
                update: list[str]) -> None:
        stmt = insert(table).values(**row)
        stmt = stmt.on_conflict_do_update(index_elements=keys,
                                          set_={k: stmt.excluded[k] for k in update})
        self.conn.execute(stmt)


class SQLiteStore(SQLStore):
    transaction_class = SQLiteTransaction
