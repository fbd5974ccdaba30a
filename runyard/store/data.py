"""The data plane of the store: metric points, logs, blobs, artifacts, checkpoints,
blueprints and tokens (:class:`DataMixin`, mixed into :class:`runyard.store.sql.SQLStore`).

Conventions, binding for callers:

* Special metric values travel as the JSON-ready strings ``"NaN"``, ``"Infinity"`` and
  ``"-Infinity"`` in both directions; they are stored as ``value`` NULL plus the spelling in
  ``special`` (SQLite cannot keep a NaN in a REAL column).
* Log offsets are **byte** offsets into the UTF-8 encoding of a stream, so an agent can resume
  with the size of what it already sent; reads never split a character.
* Every write validates all of its input first and writes nothing when any of it is bad.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from runyard import errors, models
from runyard.store.base import Row
from runyard.store.schema import (
    artifacts,
    blobs,
    blueprints,
    checkpoints,
    log_chunks,
    runs,
    tokens,
)

#: Strings that stand for the floats JSON cannot carry.
SPECIALS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MAX_STEP = 2**63 - 1
MAX_TAG_LEN = 64
#: Most buckets one series request may ask for (a chart is never wider).
MAX_SERIES_POINTS = 10_000
LOG_STREAMS = ("stdout", "stderr")
ARTIFACT_KINDS = ("file", "bundle", "checkpoint")
CHECKPOINT_STATUSES = ("incomplete", "complete")
TOKEN_ROLES = tuple(r.value for r in models.Role)
#: Chunks read from the database per round trip while assembling a log read.
_LOG_BATCH = 64
#: Candidates per IN (...) list, well under both dialects' parameter limits.
_IN_BATCH = 500


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _encode_value(v: Any, field: str) -> tuple[float | None, str | None]:
    """A point's value as (finite float or None, special spelling or None)."""
    if isinstance(v, str):
        if v in SPECIALS:
            return None, v
        raise errors.ValidationError(
            f"{field}: expected a number or one of {', '.join(SPECIALS)}, got {v!r}", field=field)
    if not _is_number(v):
        raise errors.ValidationError(f"{field}: expected a number, got {type(v).__name__}",
                                     field=field)
    try:
        f = float(v)
    except OverflowError:
        raise errors.ValidationError(f"{field}: number too large", field=field) from None
    if math.isnan(f):
        return None, "NaN"
    if math.isinf(f):
        return None, "Infinity" if f > 0 else "-Infinity"
    return f, None


def decode_value(value: float | None, special: str | None) -> float | str | None:
    """The JSON-ready form of a stored value: a float, or its special spelling."""
    return special if special is not None else value


def _check_tag(tag: Any, field: str) -> str:
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LEN:
        raise errors.ValidationError(f"{field}: expected a string of 1 to {MAX_TAG_LEN} "
                                     "characters", field=field)
    if any(ord(ch) < 32 for ch in tag):
        raise errors.ValidationError(f"{field}: control characters are not allowed", field=field)
    return tag


def _check_int(v: Any, field: str, lo: int = 0, hi: int = MAX_STEP) -> int:
    if not _is_int(v) or not lo <= v <= hi:
        raise errors.ValidationError(f"{field}: expected an integer from {lo} to {hi}, "
                                     f"got {v!r}", field=field)
    return int(v)


def _check_choice(v: Any, field: str, choices: Sequence[str]) -> str:
    if v not in choices:
        raise errors.ValidationError(f"{field}: expected one of {', '.join(choices)}, got {v!r}",
                                     field=field)
    return str(v)


def _check_sha(v: Any, field: str = "sha256") -> str:
    if not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
        raise errors.ValidationError(f"{field}: expected 64 lowercase hex digits", field=field)
    return v


def _check_name(v: Any, field: str, max_len: int = 255) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= max_len or "\x00" in v:
        raise errors.ValidationError(f"{field}: expected a string of 1 to {max_len} characters",
                                     field=field)
    return v


def _rows(result: Any) -> list[Row]:
    return [dict(r._mapping) for r in result]


@contextmanager
def translated_errors() -> Iterator[None]:
    """Driver errors of a write as Runyard's: a constraint clash is a Conflict."""
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise errors.Conflict(f"conflicting write: {exc.orig}") from exc
    except sa.exc.OperationalError as exc:
        raise errors.StoreError(f"database error: {exc.orig}") from exc


class DataMixin:
    """Data-plane methods over ``self.engine`` (provided by :class:`SQLStore`)."""

    engine: sa.Engine
    dialect: str
    _read: Any  # SQLStore._read: a context manager yielding a read-only connection

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with translated_errors(), self.engine.begin() as conn:
            yield conn

    def _reader(self) -> AbstractContextManager[sa.Connection]:
        reader: AbstractContextManager[sa.Connection] = self._read()
        return reader

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (both offer ``on_conflict_do_*``)."""
        return (postgresql.insert(table) if self.dialect == "postgresql"
                else sqlite.insert(table))

    @staticmethod
    def _need_run(conn: sa.Connection, run_id: str) -> None:
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise errors.NotFound(f"run {run_id!r} not found")

    # ------------------------------------------------------------------ logs
    def add_log_chunks(self, run_id: str, attempt: int, chunks: Sequence[Mapping[str, Any]],
                       at: float) -> int:
        """Store ``{stream, offset, data}`` chunks; a chunk already stored at its
        (attempt, stream, offset) is kept as is. Returns how many chunks were new.

        NUL characters (which PostgreSQL text refuses) become U+001A SUBSTITUTE, one byte
        like NUL, so byte offsets stay right.
        """
        _check_int(attempt, "attempt", 0, 2**31 - 1)
        if not _is_number(at):
            raise errors.ValidationError("at: expected UNIX seconds", field="at")
        if isinstance(chunks, (str, bytes)) or not isinstance(chunks, Sequence):
            raise errors.ValidationError("chunks: expected a list", field="chunks")
        rows = []
        for i, ch in enumerate(chunks):
            if not isinstance(ch, Mapping):
                raise errors.ValidationError(f"chunks[{i}]: expected an object",
                                             field=f"chunks[{i}]")
            stream = _check_choice(ch.get("stream"), f"chunks[{i}].stream", LOG_STREAMS)
            offset = _check_int(ch.get("offset"), f"chunks[{i}].offset")
            data = ch.get("data")
            if not isinstance(data, str) or not data:
                raise errors.ValidationError(f"chunks[{i}].data: expected a non-empty string",
                                             field=f"chunks[{i}].data")
            rows.append({"run_id": run_id, "attempt": attempt, "stream": stream,
                         "offset": offset, "data": data.replace("\x00", "\x1a"),
                         "at": float(at)})
        if not rows:
            return 0
        stmt = self._insert(log_chunks).on_conflict_do_nothing(
            index_elements=["run_id", "attempt", "stream", "offset"])
        with self._write() as conn:
            self._need_run(conn, run_id)
            return sum(max(conn.execute(stmt, r).rowcount, 0) for r in rows)

    def read_logs(self, run_id: str, *, attempt: int | None = None, stream: str = "stdout",
                  offset: int = 0, limit_bytes: int = 65536) -> dict[str, Any]:
        """Up to ``limit_bytes`` of consecutive text from byte ``offset`` of a stream:
        ``{data, next_offset, attempt}``. ``attempt`` None means the run's latest. The read
        stops at a gap (a chunk not received yet) and never splits a character; pass
        ``next_offset`` back to continue.
        """
        _check_choice(stream, "stream", LOG_STREAMS)
        pos = _check_int(offset, "offset")
        _check_int(limit_bytes, "limit_bytes", 1, 64 * 2**20)
        lc = log_chunks.c
        with self._reader() as conn:
            if attempt is None:
                run_attempt = conn.execute(sa.select(runs.c.attempt)
                                           .where(runs.c.id == run_id)).scalar()
                if run_attempt is None:
                    raise errors.NotFound(f"run {run_id!r} not found")
                logged = conn.execute(sa.select(sa.func.max(lc.attempt))
                                      .where(lc.run_id == run_id)).scalar()
                attempt = max(int(run_attempt), int(logged or 0))
            else:
                _check_int(attempt, "attempt", 0, 2**31 - 1)
            key = [lc.run_id == run_id, lc.attempt == attempt, lc.stream == stream]
            # Start at the chunk holding `pos`: the last one that begins at or before it.
            start = conn.execute(sa.select(sa.func.max(lc.offset))
                                 .where(*key, lc.offset <= pos)).scalar()
            out = bytearray()
            cursor = pos if start is None else int(start)
            first = True
            while len(out) < limit_bytes:
                batch = conn.execute(
                    sa.select(lc.offset, lc.data)
                    .where(*key, lc.offset >= cursor if first else lc.offset > cursor)
                    .order_by(lc.offset).limit(_LOG_BATCH)).all()
                first = False
                for chunk_offset, data in batch:
                    if chunk_offset > pos:
                        break  # a gap: what follows has not arrived
                    raw = data.encode("utf-8")
                    if chunk_offset + len(raw) > pos:
                        take = raw[pos - chunk_offset:pos - chunk_offset + limit_bytes - len(out)]
                        out += take
                        pos += len(take)
                        if len(out) >= limit_bytes:
                            break
                else:
                    if len(batch) == _LOG_BATCH:
                        cursor = batch[-1][0]
                        continue
                break
        text, used = _decode_prefix(bytes(out))
        return {"data": text, "next_offset": pos - (len(out) - used), "attempt": attempt}

    # ------------------------------------------------------------------ blobs, artifacts
    def add_blob(self, sha256: str, size: int) -> Row:
        """Register a stored blob (idempotent: a known sha256 keeps its row)."""
        _check_sha(sha256)
        _check_int(size, "size")
        with self._write() as conn:
            self._ensure_blob(conn, sha256, size)
            return dict(conn.execute(sa.select(blobs).where(blobs.c.sha256 == sha256))
                        .one()._mapping)

    def _ensure_blob(self, conn: sa.Connection, sha256: str, size: int) -> None:
        conn.execute(self._insert(blobs).on_conflict_do_nothing(index_elements=["sha256"]),
                     {"sha256": sha256, "size": size, "created_at": time.time()})

    def get_blob(self, sha256: str) -> Row | None:
        with self._reader() as conn:
            r = conn.execute(sa.select(blobs).where(blobs.c.sha256 == sha256)).first()
        return None if r is None else dict(r._mapping)

    def delete_blob(self, sha256: str) -> bool:
        """Forget a blob; Conflict while an artifact or checkpoint still refers to it."""
        if not self.unreferenced_blob_shas([sha256]):
            raise errors.Conflict(f"blob {sha256} is still referenced")
        with self._write() as conn:
            return bool(conn.execute(blobs.delete().where(blobs.c.sha256 == sha256)).rowcount)

    def add_artifact(self, run_id: str, attempt: int, name: str, kind: str, size: int,
                     sha256: str) -> Row:
        """Index an artifact (registering its blob too); a second upload of the same
        (run, attempt, name) replaces the first. The row has ``created``: True when new."""
        _check_int(attempt, "attempt", 0, 2**31 - 1)
        _check_name(name, "name")
        _check_choice(kind, "kind", ARTIFACT_KINDS)
        _check_int(size, "size")
        _check_sha(sha256)
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
            row = dict(conn.execute(sa.select(artifacts).where(*key)).one()._mapping)
        row["created"] = old is None
        return row

    def list_artifacts(self, run_id: str) -> list[Row]:
        a = artifacts.c
        with self._reader() as conn:
            return _rows(conn.execute(sa.select(artifacts).where(a.run_id == run_id)
                                      .order_by(a.attempt, a.name)))

    def unreferenced_blob_shas(self, candidates: Sequence[str]) -> list[str]:
        """Those of ``candidates`` no artifact or checkpoint refers to."""
        wanted = sorted(set(candidates))
        used: set[str] = set()
        with self._reader() as conn:
            for i in range(0, len(wanted), _IN_BATCH):
                part = wanted[i:i + _IN_BATCH]
                q = sa.union(
                    sa.select(artifacts.c.sha256).where(artifacts.c.sha256.in_(part)),
                    sa.select(checkpoints.c.sha256).where(checkpoints.c.sha256.in_(part)))
                used.update(r[0] for r in conn.execute(q))
        return [s for s in wanted if s not in used]

    # ------------------------------------------------------------------ checkpoints
    def add_checkpoint(self, run_id: str, attempt: int, step: int, status: str,
                       name: str | None = None, sha256: str | None = None,
                       size: int | None = None, metrics: Mapping[str, Any] | None = None
                       ) -> Row:
        """Record a checkpoint; the same (run, attempt, step) again updates it (e.g. from
        incomplete to complete). A sha256 needs its size and registers the blob."""
        _check_int(attempt, "attempt", 0, 2**31 - 1)
        _check_int(step, "step")
        _check_choice(status, "status", CHECKPOINT_STATUSES)
        if name is not None:
            _check_name(name, "name")
        if sha256 is not None:
            _check_sha(sha256)
            if size is None:
                raise errors.ValidationError("size: required with sha256", field="size")
        if size is not None:
            _check_int(size, "size")
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
            stmt = self._insert(checkpoints).values(run_id=run_id, attempt=attempt, step=step,
                                                    **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id", "attempt", "step"],
                set_={k: stmt.excluded[k] for k in values if k != "created_at"})
            conn.execute(stmt)
            return dict(conn.execute(sa.select(checkpoints).where(*key)).one()._mapping)

    def list_checkpoints(self, run_id: str) -> list[Row]:
        c = checkpoints.c
        with self._reader() as conn:
            return _rows(conn.execute(sa.select(checkpoints).where(c.run_id == run_id)
                                      .order_by(c.step, c.attempt)))

    def delete_checkpoints(self, run_id: str, ids: Sequence[int]) -> list[str]:
        """Delete checkpoints of a run by id; returns the blob shas they referred to (the
        caller asks :meth:`unreferenced_blob_shas` which ones may go).

        A checkpoint's file was uploaded as a ``checkpoint`` artifact of the same attempt,
        name and blob; that row goes with it (unless a remaining checkpoint names the same
        upload), or it would keep the blob, and list a file that retention retired.
        """
        ids = [_check_int(i, "ids") for i in ids]
        c, a = checkpoints.c, artifacts.c
        shas: set[str] = set()
        uploads: set[tuple[int, str, str]] = set()
        with self._write() as conn:
            for i in range(0, len(ids), _IN_BATCH):
                where = [c.run_id == run_id, c.id.in_(ids[i:i + _IN_BATCH])]
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

    # ------------------------------------------------------------------ blueprints
    def put_blueprint(self, name: str, command: Sequence[str],
                      config_schema: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                      source: str | None = None) -> Row:
        """Create or replace a blueprint."""
        _check_name(name, "name", 200)
        if (isinstance(command, str) or not isinstance(command, Sequence) or not command
                or not all(isinstance(a, str) for a in command)):
            raise errors.ValidationError("command: expected a non-empty list of strings",
                                         field="command")
        if config_schema is not None and not isinstance(config_schema, Mapping):
            raise errors.ValidationError("config_schema: expected an object",
                                         field="config_schema")
        if not isinstance(defaults, Mapping):
            raise errors.ValidationError("defaults: expected an object", field="defaults")
        values = {"command": list(command),
                  "config_schema": dict(config_schema) if config_schema is not None else None,
                  "defaults": dict(defaults), "source": source, "updated_at": time.time()}
        stmt = self._insert(blueprints).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                          set_={k: stmt.excluded[k] for k in values})
        with self._write() as conn:
            conn.execute(stmt)
            return dict(conn.execute(sa.select(blueprints).where(blueprints.c.name == name))
                        .one()._mapping)

    def list_blueprints(self) -> list[Row]:
        with self._reader() as conn:
            return _rows(conn.execute(sa.select(blueprints).order_by(blueprints.c.name)))

    def get_blueprint(self, name: str) -> Row | None:
        with self._reader() as conn:
            r = conn.execute(sa.select(blueprints).where(blueprints.c.name == name)).first()
        return None if r is None else dict(r._mapping)

    # ------------------------------------------------------------------ tokens
    _TOKEN_COLS = (tokens.c.name, tokens.c.role, tokens.c.created_at, tokens.c.last_used_at,
                   tokens.c.revoked_at)

    def create_token(self, name: str, role: str, token_hash: str) -> Row:
        """Store a token by its hash. Conflict while an unrevoked token has the name; a
        revoked token's name can be given to a new token (the old row is replaced)."""
        _check_name(name, "name", 200)
        _check_choice(role, "role", TOKEN_ROLES)
        _check_sha(token_hash, "token_hash")
        t = tokens.c
        with self._write() as conn:
            old = conn.execute(sa.select(t.revoked_at).where(t.name == name)).first()
            if old is not None and old.revoked_at is None:
                raise errors.Conflict(f"a token named {name!r} already exists", field="name")
            if old is not None:
                conn.execute(tokens.delete().where(t.name == name))
            conn.execute(tokens.insert().values(name=name, role=role, token_hash=token_hash,
                                                created_at=time.time()))
            return dict(conn.execute(sa.select(*self._TOKEN_COLS).where(t.name == name))
                        .one()._mapping)

    def token_by_hash(self, token_hash: str) -> Row | None:
        """The unrevoked token with this hash (without the hash), or None."""
        t = tokens.c
        with self._reader() as conn:
            r = conn.execute(sa.select(*self._TOKEN_COLS)
                             .where(t.token_hash == token_hash, t.revoked_at.is_(None))).first()
        return None if r is None else dict(r._mapping)

    def list_tokens(self) -> list[Row]:
        """Every token, revoked ones included, by name; never the hashes."""
        with self._reader() as conn:
            return _rows(conn.execute(sa.select(*self._TOKEN_COLS).order_by(tokens.c.name)))

    def revoke_token(self, name: str) -> bool:
        """True when an unrevoked token of that name was revoked."""
        t = tokens.c
        with self._write() as conn:
            return bool(conn.execute(tokens.update()
                                     .where(t.name == name, t.revoked_at.is_(None))
                                     .values(revoked_at=time.time())).rowcount)

    def touch_token(self, name: str, at: float) -> None:
        with self._write() as conn:
            conn.execute(tokens.update().where(tokens.c.name == name).values(last_used_at=at))

    def count_tokens(self) -> int:
        """Unrevoked tokens (none at all means auth was never set up)."""
        with self._reader() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(tokens)
                                    .where(tokens.c.revoked_at.is_(None))).scalar_one())

    # ------------------------------------------------------------------ manifest support
    def job_keys(self, source: str | None = None) -> dict[str, Row]:
        """``{job_key: {id, status, name}}`` of runs with a job key (optionally one source's)."""
        c = runs.c
        stmt = sa.select(c.job_key, c.id, c.status, c.name).where(c.job_key.is_not(None))
        if source is not None:
            stmt = stmt.where(c.source == source)
        with self._reader() as conn:
            return {r.job_key: {"id": r.id, "status": r.status, "name": r.name}
                    for r in conn.execute(stmt)}


def _decode_prefix(raw: bytes) -> tuple[str, int]:
    """Decode ``raw``, leaving out a character cut at its end; returns (text, bytes used)."""
    for cut in range(len(raw), max(len(raw) - 4, -1), -1):
        try:
            return raw[:cut].decode("utf-8"), cut
        except UnicodeDecodeError:
            continue
    # Not UTF-8 at all (an offset pointing inside a character): replace what is bad.
    return raw.decode("utf-8", errors="replace"), len(raw)
