"""Named records beside the runs: blueprints, API tokens, one-time sign-in codes, and the job
keys of manifest runs (:class:`CatalogMixin`, part of :class:`runyard.store.sql.SQLStore`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors, models
from runyard.store.access import Access, first, rows
from runyard.store.base import Row
from runyard.store.schema import blueprints, runs, signin_codes, tokens
from runyard.store.values import check_choice, check_name, check_sha

TOKEN_ROLES = tuple(r.value for r in models.Role)
#: A token's columns as the store returns them: never its hash.
_TOKEN_COLS = (tokens.c.name, tokens.c.role, tokens.c.created_at, tokens.c.last_used_at,
               tokens.c.revoked_at, tokens.c.hosts, tokens.c.max_hosts)


class CatalogMixin(Access):
    """Blueprint, token and job-key methods of the store."""

    # ------------------------------------------------------------------ blueprints
    def put_blueprint(self, name: str, command: Sequence[str],
                      config_schema: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                      source: str | None = None) -> Row:
        """Create or replace a blueprint."""
        check_name(name, "name", 200)
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
        stmt = self.ops.insert(blueprints).values(name=name, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                          set_={k: stmt.excluded[k] for k in values})
        with self._write() as conn:
            conn.execute(stmt)
            return dict(conn.execute(sa.select(blueprints).where(blueprints.c.name == name))
                        .mappings().one())

    def list_blueprints(self) -> list[Row]:
        with self._read() as conn:
            return rows(conn.execute(sa.select(blueprints).order_by(blueprints.c.name)))

    def get_blueprint(self, name: str) -> Row | None:
        with self._read() as conn:
            return first(conn.execute(sa.select(blueprints)
                                    .where(blueprints.c.name == name)))

    # ------------------------------------------------------------------ tokens
    def create_token(self, name: str, role: str, token_hash: str, *, hosts: str | None = None,
                     max_hosts: int | None = None) -> Row:
        """Store a token by its hash. Conflict while an unrevoked token has the name; a
        revoked token's name can be given to a new token (the old row is replaced)."""
        check_name(name, "name", 200)
        if (hosts is not None or max_hosts is not None) and role != models.Role.WORKER.value:
            raise errors.ValidationError("hosts: only a worker token is bound to hosts",
                                         field="hosts")
        check_choice(role, "role", TOKEN_ROLES)
        check_sha(token_hash, "token_hash")
        t = tokens.c
        with self._write() as conn:
            old = conn.execute(sa.select(t.revoked_at).where(t.name == name)).first()
            if old is not None and old.revoked_at is None:
                raise errors.Conflict(f"a token named {name!r} already exists", field="name")
            if old is not None:
                conn.execute(tokens.delete().where(t.name == name))
            conn.execute(tokens.insert().values(name=name, role=role, token_hash=token_hash,
                                                created_at=time.time(), hosts=hosts,
                                                max_hosts=max_hosts))
            return dict(conn.execute(sa.select(*_TOKEN_COLS).where(t.name == name))
                        .mappings().one())

    def token_by_hash(self, token_hash: str) -> Row | None:
        """The unrevoked token with this hash (without the hash), or None."""
        t = tokens.c
        with self._read() as conn:
            return first(conn.execute(sa.select(*_TOKEN_COLS)
                                    .where(t.token_hash == token_hash,
                                           t.revoked_at.is_(None))))

    def get_token(self, name: str) -> Row | None:
        t = tokens.c
        with self._read() as conn:
            return first(conn.execute(sa.select(*_TOKEN_COLS)
                                    .where(t.name == name, t.revoked_at.is_(None))))

    def list_tokens(self) -> list[Row]:
        """Every token, revoked ones included, by name; never the hashes."""
        with self._read() as conn:
            return rows(conn.execute(sa.select(*_TOKEN_COLS).order_by(tokens.c.name)))

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
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(tokens)
                                    .where(tokens.c.revoked_at.is_(None))).scalar_one())

    # ------------------------------------------------------------------ sign-in codes
    def create_signin_code(self, code_hash: str, name: str, role: str, *, created_at: float,
                           expires_at: float, forget_before: float) -> None:
        check_name(name, "name", 200)
        check_choice(role, "role", TOKEN_ROLES)
        check_sha(code_hash, "code_hash")
        c = signin_codes.c
        with self._write() as conn:
            conn.execute(signin_codes.delete().where(c.expires_at < forget_before))
            conn.execute(signin_codes.insert().values(
                code_hash=code_hash, name=name, role=role, created_at=created_at,
                expires_at=expires_at))

    def signin_code(self, code_hash: str) -> Row | None:
        with self._read() as conn:
            return first(conn.execute(sa.select(signin_codes)
                                      .where(signin_codes.c.code_hash == code_hash)))

    def take_signin_code(self, code_hash: str, *, now: float, token_name: str
                         ) -> tuple[Row | None, bool]:
        c = signin_codes.c
        with self._write() as conn:
            found = first(conn.execute(sa.select(signin_codes).where(c.code_hash == code_hash)))
            if found is None or found["used_at"] is not None or found["expires_at"] <= now:
                return found, False
            # The condition again in the UPDATE: of two takers racing here, one changes the
            # row and the other changes nothing.
            taken = conn.execute(signin_codes.update()
                                 .where(c.code_hash == code_hash, c.used_at.is_(None))
                                 .values(used_at=now, token_name=token_name)).rowcount
            return found, bool(taken)

    # ------------------------------------------------------------------ job keys
    def job_keys(self, source: str | None = None) -> dict[str, Row]:
        """``{job_key: {id, status, name}}`` of runs with a job key (optionally one source's)."""
        c = runs.c
        stmt = sa.select(c.job_key, c.id, c.status, c.name).where(c.job_key.is_not(None))
        if source is not None:
            stmt = stmt.where(c.source == source)
        with self._read() as conn:
            return {r.job_key: {"id": r.id, "status": r.status, "name": r.name}
                    for r in conn.execute(stmt)}
