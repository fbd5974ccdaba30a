"""Project and server-wide rules, and each run's rule state (:class:`RulesMixin`, part of
:class:`runyard.store.sql.SQLStore`; the transaction's primitives are
:func:`lock_states`, :func:`put_states` and :func:`count_hits`).

Rule state is written only by a transaction that holds its run's row lock (every writer
locks the run first), so two servers on one PostgreSQL database evaluate a run's rules one
after the other and a rule fires once (docs/rules.md).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store.access import Access, first, rows
from runyard.store.base import Row
from runyard.store.dialect import Dialect
from runyard.store.prepared import Prepared
from runyard.store.schema import rule_states, rules, runs

#: Rules one scope (a project, or the server) may hold.
MAX_RULES_PER_SCOPE = 100
_STATE_COLUMNS = ("attempt", "feed", "last_step", "best", "count", "fired", "hits",
                  "last_hit_at", "last_hit")


class RulesMixin(Access):
    """Rule methods of the store."""

    def add_rule(self, project: str, name: str, spec: Mapping[str, Any], *,
                 owner: str | None, created_by: str) -> Row:
        """Store a project rule (``project`` "" for server-wide); a name the scope holds
        already, or a full scope, is a conflict."""
        row = {"project": project, "name": name, "owner": owner, "spec": dict(spec),
               "created_by": created_by, "created_at": time.time()}
        with self._write() as conn:
            have = conn.execute(sa.select(sa.func.count()).select_from(rules)
                                .where(rules.c.project == project)).scalar_one()
            if have >= MAX_RULES_PER_SCOPE:
                raise errors.Conflict(f"{_scope(project)} holds {MAX_RULES_PER_SCOPE} rules "
                                      "already; remove one first")
            clash = conn.execute(sa.select(rules.c.id).where(
                rules.c.project == project, rules.c.name == name)).first()
            if clash is not None:
                raise errors.Conflict(f"{_scope(project)} has a rule named {name!r} already "
                                      f"(id {clash[0]}); remove it first", field="name")
            new_id = conn.execute(rules.insert().values(**row).returning(rules.c.id)
                                  ).scalar_one()
        return {"id": int(new_id), **row}

    def list_rules(self, project: str | None = None) -> list[Row]:
        """Every stored rule, or those of one scope (``""``: server-wide), by id."""
        stmt = sa.select(rules).order_by(rules.c.id)
        if project is not None:
            stmt = stmt.where(rules.c.project == project)
        with self._read() as conn:
            return rows(conn.execute(stmt))

    def get_rule(self, rule_id: int) -> Row | None:
        with self._read() as conn:
            return first(conn.execute(sa.select(rules).where(rules.c.id == rule_id)))

    def delete_rule(self, rule_id: int) -> bool:
        """Remove a rule and its state on every run."""
        with self._write() as conn:
            row = first(conn.execute(sa.select(rules).where(rules.c.id == rule_id)))
            if row is None:
                return False
            key = f"{'project' if row['project'] else 'server'}:{rule_id}"
            conn.execute(rule_states.delete().where(rule_states.c.rule_key == key))
            conn.execute(rules.delete().where(rules.c.id == rule_id))
        return True

    def rule_states(self, run_id: str) -> dict[str, Row]:
        """A run's rule states by rule key."""
        with self._read() as conn:
            return _states(conn, run_id)

    def runs_with_rules(self, statuses: Sequence[str], projects: Collection[str],
                        limit: int = 500) -> list[Row]:
        """Runs of these statuses that may have rules: their own, or their project's (a
        project of ``projects``; "" among them: the server has rules, so every run)."""
        c = runs.c
        stmt = sa.select(c.id, c.project, c.owner, c.rules, c.status, c.attempt, c.started_at,
                         c.last_step_at, c.stall_after_s, c.progress).where(
            c.status.in_(list(statuses)))
        if "" not in projects:
            may = [c.rules.is_not(None)]
            if projects:
                may.append(c.project.in_(sorted(projects)))
            stmt = stmt.where(sa.or_(*may))
        with self._read() as conn:
            return rows(conn.execute(stmt.order_by(c.id).limit(limit)))


def _scope(project: str) -> str:
    return f"project {project!r}" if project else "the server"


# Read and written with every metrics batch of a run that has rules: compiled once.
_STATES_OF_RUN = Prepared(sa.select(rule_states).where(
    rule_states.c.run_id == sa.bindparam("run_id")))


def _states(conn: sa.Connection, run_id: str) -> dict[str, Row]:
    return {r["rule_key"]: r for r in _STATES_OF_RUN.all(conn, run_id=run_id)}


def _upsert(ops: Dialect) -> Prepared:
    def build() -> Prepared:
        keys = ("run_id", "rule_key", *_STATE_COLUMNS)
        stmt = ops.insert(rule_states).values({k: sa.bindparam(k) for k in keys})
        stmt = stmt.on_conflict_do_update(index_elements=["run_id", "rule_key"],
                                          set_={c: stmt.excluded[c] for c in _STATE_COLUMNS})
        return Prepared(stmt)

    return Prepared.cached(("rule_states_upsert", type(ops).__name__), build)


def lock_states(conn: sa.Connection, run_id: str) -> dict[str, Row]:
    """A run's rule states (the caller holds the run's lock)."""
    return _states(conn, run_id)


def put_states(conn: sa.Connection, ops: Dialect, run_id: str,
               states: Mapping[str, Mapping[str, Any]]) -> None:
    """Insert or replace these rule states of a run."""
    _upsert(ops).run_many(conn, [{"run_id": run_id, "rule_key": key,
                                  **{c: state.get(c) for c in _STATE_COLUMNS}}
                                 for key, state in states.items()])


def count_hits(conn: sa.Connection, run_id: str, n: int) -> None:
    """Add ``n`` to the run's hit count."""
    conn.execute(runs.update().where(runs.c.id == run_id)
                 .values(rule_hits=runs.c.rule_hits + n))
