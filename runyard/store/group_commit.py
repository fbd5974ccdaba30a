"""SQLite group commit: writers of one process take turns in arrival order, and writers that
queue up behind each other share one transaction and one commit.

Why: SQLite has one writer at a time, and with ``synchronous=FULL`` each commit waits for an
fsync, so a commit per transaction caps every writer of the file together at the disk's fsync
rate. Concurrent writers (claim batches, heartbeats, metric batches) queued behind a commit
are answered by the next single one instead. The queue's own batching of claims
(:mod:`runyard.combining`) only merges claims; this merges every kind of write.
:class:`GroupCommit` is the mechanism's one home; :class:`runyard.store.sqlite.SQLiteStore`
runs its write transactions through it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from runyard import errors

#: Writers one shared transaction may hold before it commits anyway.
MAX_GROUP = 32
#: Seconds after its first writer finished that a shared transaction stops taking more: short
#: writes (claims) still share commits, while long ones (large metric batches) do not keep
#: the first writer waiting for several others.
MAX_GROUP_WAIT_S = 0.05


class _FifoLock:
    """A lock granted in arrival order, that can tell whether anyone waits for it.

    SQLite's busy handler polls with growing sleeps and no order, and ``threading.Lock``
    wakes an arbitrary waiter: with many writers either lets some wait far longer than the
    rest (tail latency) or past the busy timeout ("database is locked").
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._queue: deque[threading.Event] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._queue.append(turn)
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ran out
                return True
            self._queue.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if not self._hand_over():
                self._held = False

    def hand_over(self) -> bool:
        """Pass the lock to the next waiter if there is one (else keep holding it)."""
        with self._mutex:
            return self._hand_over()

    def _hand_over(self) -> bool:
        if not self._queue:
            return False
        self._queue.popleft().set()  # the lock passes straight to the next writer
        return True


class _Group:
    """One open write transaction, run through by writers one after another.

    Each writer after the first runs inside a savepoint, so a writer that fails undoes only
    its own writes; the first one's failure rolls back the transaction, which holds nothing
    else yet. (A savepoint is not free: SQLite copies each page the writer changes into a
    journal of its own, a temporary file once it outgrows a few pages.) A writer that
    finishes while others wait hands the open transaction to the next and waits for the
    commit; the last one commits for all. Nobody is answered before the commit that makes
    their writes durable, and one commit (the fsync) serves many writers.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.tx = conn.begin()
        self.members = 0
        self.first_done: float | None = None
        self.committed = threading.Event()
        self.error: BaseException | None = None

    def savepoint(self, sql: str) -> None:
        cur = self.conn.connection.cursor()
        try:
            cur.execute(sql)
        finally:
            cur.close()

    def finish(self) -> bool:
        """Commit (or, after a broken savepoint, roll back) and wake every member. False when
        that failed: the store then hands the connection back to the pool to be reset."""
        try:
            if self.error is None:
                self.tx.commit()
            else:
                self.tx.rollback()
            return True
        except BaseException as exc:
            self.error = exc
            # A COMMIT that fails (a deferred constraint) leaves SQLite's transaction open,
            # and the connection goes back to the pool: end it here.
            raw = self.conn.connection.dbapi_connection
            if raw is not None and raw.in_transaction:
                raw.rollback()
            return False
        finally:
            self.committed.set()


class GroupCommit:
    """Write transactions over ``engine``, shared by writers that queue up (see the module).

    Writers take turns, so one connection serves them all, kept rather than taken from the
    pool each time: a checkout and check-in cost a lone claim a noticeable part of its CPU,
    and this connection's page cache always holds what was written last. A writer waits at
    most ``timeout_s`` for its turn. Other processes on the same file still meet SQLite's
    busy timeout.
    """

    def __init__(self, engine: sa.Engine, timeout_s: float) -> None:
        self._engine = engine
        self._timeout_s = timeout_s
        self._turn = _FifoLock()
        self._group: _Group | None = None
        self._writer: sa.Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction, shared with the writers queued behind this one: committed
        (for all of them) before it returns, undone alone on any exception."""
        if not self._turn.acquire(timeout=self._timeout_s):
            raise errors.StoreError(
                f"database error: no write turn within {self._timeout_s:g} s")
        group = self._group
        first = group is None
        try:
            if group is None:
                if self._writer is None:
                    self._writer = self._engine.connect()
                group = self._group = _Group(self._writer)
            group.members += 1
            if not first:
                group.savepoint("SAVEPOINT writer")
        except BaseException as exc:
            self._group = None
            if group is not None and not first:  # its earlier writers wait for a commit
                group.error = exc
                group.finish()
            self._drop_writer()
            self._turn.release()
            raise
        try:
            yield group.conn
        except BaseException as exc:
            if first:
                self._abandon(group, exc)
                raise
            try:
                group.savepoint("ROLLBACK TO writer")
                group.savepoint("RELEASE writer")
            except BaseException as exc:  # the whole transaction is gone: nobody commits
                group.error = exc
            self._pass_on(group)
            raise
        if not first:
            group.savepoint("RELEASE writer")
        self._pass_on(group)
        group.committed.wait()
        if group.error is not None:
            raise errors.StoreError(f"database error: {group.error}") from group.error

    def _abandon(self, group: _Group, exc: BaseException) -> None:
        """Roll back a transaction whose first writer failed with ``exc``: nobody else is in
        it yet, and the next writer starts a new one."""
        self._group = None
        try:
            group.error = exc
            if not group.finish():
                self._drop_writer()
        finally:
            self._turn.release()

    def _pass_on(self, group: _Group) -> None:
        """Hand the open transaction to the next writer, or commit it; either way the turn
        moves on."""
        now = time.monotonic()
        if group.first_done is None:
            group.first_done = now
        if (group.error is None and group.members < MAX_GROUP
                and now - group.first_done < MAX_GROUP_WAIT_S and self._turn.hand_over()):
            return
        self._group = None
        try:
            if not group.finish():
                self._drop_writer()
        finally:
            self._turn.release()

    def _drop_writer(self) -> None:
        """Hand the writer connection back after a failure (the pool rolls it back, or
        discards it if it broke); the next writer takes one from the pool again."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except sa.exc.SQLAlchemyError:
                pass

    def close(self) -> None:
        """Give the kept writer connection back to the pool (once the current writer is
        done)."""
        if self._turn.acquire(timeout=self._timeout_s):
            try:
                self._drop_writer()
            finally:
                self._turn.release()
