"""Blobs and what refers to them: artifacts and checkpoints (:class:`BlobsMixin`, part of
:class:`runyard.store.sql.SQLStore`).

A blob is content stored once by its sha256 (the bytes live in the artifact store); artifacts
and checkpoints of runs refer to blobs, and a blob may go once nothing refers to it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store import keyset
from runyard.store.access import Access, first, rows
from runyard.store.base import Row
from runyard.store.schema import IN_BATCH, artifacts, blobs, checkpoints
from runyard.store.values import check_attempt, check_choice, check_int, check_name, check_sha

ARTIFACT_KINDS = ("file", "bundle", "checkpoint")
CHECKPOINT_STATUSES = ("incomplete", "complete")
#: What a checkpoint listing may sort on, and its default order.
CHECKPOINT_SORTABLE = frozenset({"id", "step", "attempt", "created_at"})
CHECKPOINT_SORT = "step:asc,attempt:asc"


class BlobsMixin(Access):
    """Blob, artifact and checkpoint methods of the store."""

    # ------------------------------------------------------------------ blobs
    def add_blob(self, sha256: str, size: int) -> Row:
        """Register a stored blob (idempotent: a known sha256 keeps its row)."""
        check_sha(sha256)
        check_int(size, "size")
        with self._write() as conn:
            self._ensure_blob(conn, sha256, size)
            return dict(conn.execute(sa.select(blobs).where(blobs.c.sha256 == sha256))
                        .mappings().one())

    def _ensure_blob(self, conn: sa.Connection, sha256: str, size: int) -> None:
        conn.execute(self.ops.insert(blobs).on_conflict_do_nothing(index_elements=["sha256"]),
                     {"sha256": sha256, "size": size, "created_at": time.time()})

    def get_blob(self, sha256: str) -> Row | None:
        with self._read() as conn:
            return first(conn.execute(sa.select(blobs).where(blobs.c.sha256 == sha256)))

    def delete_blob(self, sha256: str) -> bool:
        """Forget a blob; Conflict while an artifact or checkpoint still refers to it."""
        if not self.unreferenced_blob_shas([sha256]):
            raise errors.Conflict(f"blob {sha256} is still referenced")
        with self._write() as conn:
            return bool(conn.execute(blobs.delete().where(blobs.c.sha256 == sha256)).rowcount)

    def unreferenced_blob_shas(self, candidates: Sequence[str]) -> list[str]:
        """Those of ``candidates`` no artifact or checkpoint refers to."""
        with self._read() as conn:
            return unreferenced(conn, candidates)

    # ------------------------------------------------------------------ artifacts
    def add_artifact(self, run_id: str, attempt: int, name: str, kind: str, size: int,
                     sha256: str) -> Row:
        """Index an artifact (registering its blob too); a second upload of the same
        (run, attempt, name) replaces the first. The row has ``created``: True when new."""
        check_attempt(attempt)
        check_name(name, "name")
        check_choice(kind, "kind", ARTIFACT_KINDS)
        check_int(size, "size")
        check_sha(sha256)
        a = artifacts.c
        key = [a.run_id == run_id, a.attempt == attempt, a.name == name]
        with self._write() as conn:
            self._need_run(conn, run_id)
            self._ensure_blob(conn, sha256, size)
            old = conn.execute(sa.select(a.id).where(*key)).first()
            values = {"kind": kind, "size": size, "sha256": sha256, "created_at": time.time()}
            if old is None:
                conn.execute(artifacts.insert().values(run_id=run_id, attempt=attempt, name=name,
                                                       **values))
            else:
                conn.execute(artifacts.update().where(a.id == old.id).values(**values))
            out = dict(conn.execute(sa.select(artifacts).where(*key)).mappings().one())
        out["created"] = old is None
        return out

    def list_artifacts(self, run_id: str) -> list[Row]:
        a = artifacts.c
        with self._read() as conn:
            return rows(conn.execute(sa.select(artifacts).where(a.run_id == run_id)
                                     .order_by(a.attempt, a.name)))

    # ------------------------------------------------------------------ checkpoints
    def add_checkpoint(self, run_id: str, attempt: int, step: int, status: str,
                       name: str | None = None, sha256: str | None = None,
                       size: int | None = None, metrics: Mapping[str, Any] | None = None
                       ) -> Row:
        """Record a checkpoint; the same (run, attempt, step) again updates it (e.g. from
        incomplete to complete). A sha256 needs its size and registers the blob."""
        check_attempt(attempt)
        check_int(step, "step")
        check_choice(status, "status", CHECKPOINT_STATUSES)
        if name is not None:
            check_name(name, "name")
        if sha256 is not None:
            check_sha(sha256)
            if size is None:
                raise errors.ValidationError("size: required with sha256", field="size")
        if size is not None:
            check_int(size, "size")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise errors.ValidationError("metrics: expected an object", field="metrics")
        c = checkpoints.c
        key = [c.run_id == run_id, c.attempt == attempt, c.step == step]
        values = {"status": status, "name": name, "sha256": sha256, "size": size,
                  "metrics": dict(metrics) if metrics is not None else None,
                  "created_at": time.time()}
        with self._write() as conn:
            self._need_run(conn, run_id)
            if sha256 is not None and size is not None:
                self._ensure_blob(conn, sha256, size)
            stmt = self.ops.insert(checkpoints).values(run_id=run_id, attempt=attempt,
                                                       step=step, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id", "attempt", "step"],
                set_={k: stmt.excluded[k] for k in values if k != "created_at"})
            conn.execute(stmt)
            return dict(conn.execute(sa.select(checkpoints).where(*key)).mappings().one())

    def list_checkpoints(self, run_id: str) -> list[Row]:
        c = checkpoints.c
        with self._read() as conn:
            return rows(conn.execute(sa.select(checkpoints).where(c.run_id == run_id)
                                     .order_by(c.step, c.attempt)))

    def find_checkpoints(self, run_id: str, *, steps: Sequence[int] = (),
                         statuses: Sequence[str] = (), created_after: float | None = None,
                         created_before: float | None = None,
                         sort: str | Sequence[str] | None = None,
                         after: Sequence[Any] | None = None, limit: int = 1000) -> list[Row]:
        """A run's checkpoints at any of ``steps``, with any of ``statuses``, registered
        within the times given, in the order of ``sort`` (:data:`CHECKPOINT_SORTABLE`),
        after the keyset position ``after``."""
        keys = keyset.parse_sort(sort, CHECKPOINT_SORTABLE, CHECKPOINT_SORT)
        c = checkpoints.c
        stmt = sa.select(checkpoints).where(c.run_id == run_id)
        if steps:
            stmt = stmt.where(c.step.in_([check_int(s, "step") for s in steps]))
        if statuses:
            stmt = stmt.where(c.status.in_([check_choice(s, "status", CHECKPOINT_STATUSES)
                                            for s in statuses]))
        if created_after is not None:
            stmt = stmt.where(c.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(c.created_at < created_before)
        if after is not None:
            stmt = stmt.where(keyset.after(checkpoints, keys, keyset.Position(tuple(after))))
        stmt = stmt.order_by(*keyset.order_by(checkpoints, keys)).limit(limit)
        with self._read() as conn:
            return rows(conn.execute(stmt))

    def delete_checkpoints(self, run_id: str, ids: Sequence[int]) -> list[str]:
        """Delete checkpoints of a run by id; returns the blob shas they referred to (the
        caller asks :meth:`unreferenced_blob_shas` which ones may go).

        A checkpoint's file was uploaded as a ``checkpoint`` artifact of the same attempt,
        name and blob; that row goes with it (unless a remaining checkpoint names the same
        upload), or it would keep the blob, and list a file that retention retired.
        """
        ids = [check_int(i, "ids") for i in ids]
        c, a = checkpoints.c, artifacts.c
        shas: set[str] = set()
        uploads: set[tuple[int, str, str]] = set()
        with self._write() as conn:
            for i in range(0, len(ids), IN_BATCH):
                where = [c.run_id == run_id, c.id.in_(ids[i:i + IN_BATCH])]
                for attempt, name, sha256 in conn.execute(
                        sa.select(c.attempt, c.name, c.sha256).where(*where)):
                    if sha256 is not None:
                        shas.add(sha256)
                        if name is not None:
                            uploads.add((attempt, name, sha256))
                conn.execute(checkpoints.delete().where(*where))
            for attempt, name, sha256 in sorted(uploads):
                still_named = sa.exists().where(c.run_id == run_id, c.attempt == attempt,
                                                c.name == name, c.sha256 == sha256)
                conn.execute(artifacts.delete().where(
                    a.run_id == run_id, a.attempt == attempt, a.name == name,
                    a.kind == "checkpoint", a.sha256 == sha256, ~still_named))
        return sorted(shas)


def unreferenced(conn: sa.Connection, candidates: Sequence[str]) -> list[str]:
    """Those of ``candidates`` no artifact or checkpoint refers to, sorted."""
    wanted = sorted(set(candidates))
    used: set[str] = set()
    for i in range(0, len(wanted), IN_BATCH):
        part = wanted[i:i + IN_BATCH]
        q = sa.union(
            sa.select(artifacts.c.sha256).where(artifacts.c.sha256.in_(part)),
            sa.select(checkpoints.c.sha256).where(checkpoints.c.sha256.in_(part)))
        used.update(r[0] for r in conn.execute(q))
    return [s for s in wanted if s not in used]
