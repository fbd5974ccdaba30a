"""Bearer tokens and roles (docs/security.md).

Secrets are 32 random bytes; only their sha256 is stored, and a request's token is found by
its hash. That lookup is safe against timing attacks for such tokens: an attacker cannot
choose the hash it probes with. Leases, which are compared directly, use
:func:`hmac.compare_digest` (:func:`runyard.models.leases_match`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from runyard import enrolment, errors, local, models
from runyard.models import Role
from runyard.store.base import Row, Store

log = logging.getLogger(__name__)

TOKEN_PREFIX = "ry_"
ADMIN_NAME = "admin"
#: ``last_used_at`` is written at most this often per token (a write per request is waste).
TOUCH_EVERY_S = 60.0
_RANK = {Role.VIEWER: 1, Role.USER: 2, Role.OPERATOR: 3}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (the actor of events) and role; a worker token's
    host binding as it was read (None: not bound yet, or not a worker token)."""

    name: str
    role: Role
    hosts: tuple[str, ...] | None = None
    #: For an attempt's own credential: the one attempt (and its run) it may act on.
    attempt_id: str | None = None
    run_id: str | None = None

    def at_least(self, role: Role) -> bool:
        """Human roles are ordered viewer < user < operator; a worker is none of them."""
        return self.role in _RANK and _RANK[self.role] >= _RANK[role]

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_role(value: Any) -> Role:
    """A token's role; ``attempt`` is no token's (attempts get their own credential)."""
    try:
        if value == Role.ATTEMPT.value:
            raise ValueError(value)
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role if r is not Role.ATTEMPT)
        raise errors.ValidationError(f"role: expected one of {allowed}, got {value!r}",
                                     field="role") from None


class TokenAuth:
    """Resolves bearer secrets to principals, with a short cache in front of the database."""

    def __init__(self, store: Store, *, enabled: bool = True, cache_s: float = 2.0) -> None:
        self.store = store
        self.enabled = enabled
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop the cache (after a revocation, so it takes effect at once here)."""
        with self._lock:
            self._cache.clear()

    def cached(self, header: str | None) -> Principal | None:
        """The caller when that needs no database (a fresh cache hit with nothing to record),
        else None; refuses a missing or malformed header at once. Cheap enough for the event
        loop, so most requests skip a hop to a worker thread."""
        if not self.enabled:
            return _ANONYMOUS
        if _secret(header).startswith(models.ATTEMPT_TOKEN_PREFIX):
            return None  # never cached: it ends with its attempt (resolve reads it)
        now = time.monotonic()
        found, principal = self._fresh(_digest(header), now)
        if not found:
            return None
        if principal is None:
            raise errors.AuthError("invalid or revoked token")
        with self._lock:
            due = now - self._touched.get(principal.name, -TOUCH_EVERY_S) >= TOUCH_EVERY_S
        return None if due else principal

    def resolve(self, header: str | None) -> Principal:
        """The caller, from the cache or the database (which it may write: last use)."""
        if not self.enabled:
            return _ANONYMOUS
        digest = _digest(header)
        if _secret(header).startswith(models.ATTEMPT_TOKEN_PREFIX):
            return self._attempt(digest)
        now = time.monotonic()
        found, principal = self._fresh(digest, now)
        if not found:
            # The lookup is by hash: equal-length digests of 32-byte secrets leak nothing
            # an attacker can steer, so no timing side channel remains to close here.
            row = self.store.token_by_hash(digest)
            principal = None
            if row is not None and not row.get("revoked_at"):
                principal = Principal(row["name"], Role(row["role"]),
                                      enrolment.decode(row.get("hosts")))
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal)
        if principal is None:
            raise errors.AuthError("invalid or revoked token")
        self._touch(principal.name, now)
        return principal

    def _attempt(self, digest: str) -> Principal:
        """The principal of an attempt's own credential, while the attempt is active. Read
        from the database every time (one indexed row): a cache would let it outlive its
        attempt."""
        row = self.store.attempt_by_token_hash(digest)
        if row is None or not row["active"]:
            raise errors.AuthError("invalid or expired attempt credential")
        return Principal(f"{row['host_id']}/attempt-{row['number']}", Role.ATTEMPT,
                         attempt_id=row["id"], run_id=row["run_id"])

    def _fresh(self, digest: str, now: float) -> tuple[bool, Principal | None]:
        """``(found, principal)`` of a cache entry younger than ``cache_s`` (a refused token
        is cached too, as None)."""
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or now - hit[0] >= self.cache_s:
            return False, None
        return True, hit[1]

    def _touch(self, name: str, now: float) -> None:
        with self._lock:
            if now - self._touched.get(name, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
                return
            self._touched[name] = now
        try:
            self.store.touch_token(name, time.time())
        except errors.RunyardError:  # bookkeeping only; never fail a request for it
            log.debug("could not record the use of token %s", name, exc_info=True)


_ANONYMOUS = Principal("anonymous", Role.OPERATOR)


def _secret(header: str | None) -> str:
    """A bearer header's secret, or 401 for a missing/malformed header."""
    if not header:
        raise errors.AuthError("authentication required: send 'Authorization: Bearer <token>'")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise errors.AuthError("authentication required: send 'Authorization: Bearer <token>'")
    return secret


def _digest(header: str | None) -> str:
    """The stored hash of a bearer header's secret, or 401 for a missing/malformed header."""
    return hash_token(_secret(header))


def create_token(store: Store, name: str, role: Role | str, secret: str | None = None, *,
                 hosts: Any = None, max_hosts: int | None = None) -> tuple[Row, str]:
    """Store a new token; returns its row and the secret (shown once, never stored).

    ``hosts`` binds a worker token to host ids or patterns (None: to the first host it claims
    as); ``max_hosts`` caps the hosts it may have registered at once."""
    models.validate_name(name, "name")
    role = parse_role(role)
    secret = secret or new_secret()
    if len(secret) < 16:
        raise errors.ValidationError("token: at least 16 characters", field="token")
    if secret.startswith(models.ATTEMPT_TOKEN_PREFIX):
        raise errors.ValidationError(
            f"token: {models.ATTEMPT_TOKEN_PREFIX!r} starts attempt credentials only",
            field="token")
    patterns = enrolment.parse_hosts(hosts) if hosts is not None else None
    if max_hosts is not None and not 1 <= max_hosts <= enrolment.MAX_HOSTS_LIMIT:
        raise errors.ValidationError(
            f"max_hosts: expected 1 to {enrolment.MAX_HOSTS_LIMIT}", field="max_hosts")
    if role is not Role.WORKER and (patterns is not None or max_hosts is not None):
        field = "hosts" if patterns is not None else "max_hosts"
        raise errors.ValidationError(f"{field}: only a worker token is bound to hosts",
                                     field=field)
    row = store.create_token(name, role.value, hash_token(secret),
                             hosts=enrolment.encode(patterns), max_hosts=max_hosts)
    return row, secret


def bootstrap_admin(store: Store, data_dir: Path, env_token: str | None) -> Path | None:
    """On first start (no token in the database) create the operator token ``admin``.

    ``env_token`` (RUNYARD_ADMIN_TOKEN) is used when given; otherwise a new secret is written
    to ``<data_dir>/admin-token`` with mode 0600 and that path is returned (never the secret).
    """
    if store.count_tokens():
        return None
    if env_token:
        create_token(store, ADMIN_NAME, Role.OPERATOR, env_token)
        return None
    _, secret = create_token(store, ADMIN_NAME, Role.OPERATOR)
    return local.write_admin_token(data_dir, secret)


# --------------------------------------------------------------------------- dependencies


# The dependencies are coroutines: FastAPI runs a plain function in a worker thread, and a
# hop there and back costs more than the check itself on every request.


async def authenticate(tokens: TokenAuth, header: str | None) -> Principal:
    """The caller of a request with this ``Authorization`` header, or 401; the database is
    read in a worker thread, and only when the cache cannot answer."""
    who = tokens.cached(header)
    if who is None:
        who = await run_in_threadpool(tokens.resolve, header)
    return who


#: Where :class:`runyard.server.limits.BodyGuard` leaves the caller it authenticated.
STATE_KEY = "runyard_principal"


async def caller(tokens: TokenAuth, scope: Any) -> Principal:
    """The caller of a request: the one BodyGuard already authenticated (a request with a
    body), else found from the ``Authorization`` header now; or 401."""
    who = scope.get("state", {}).get(STATE_KEY)
    if isinstance(who, Principal):
        return who
    header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"),
                  None)
    return await authenticate(tokens, header)


async def principal(request: Request) -> Principal:
    """The caller, or 401."""
    return await caller(request.app.state.runyard.auth, request.scope)


Check = tuple[Callable[[Principal], bool], str]


def demand(who: Principal, check: Check) -> Principal:
    """``who`` if it passes ``check``, else 403 naming what it may not do."""
    allowed, what = check
    if not allowed(who):
        raise errors.Forbidden(f"token {who.name!r} ({who.role.value}) may not {what}")
    return who


def _require(check: Check) -> Callable[..., Any]:
    async def dep(who: Principal = Depends(principal)) -> Principal:
        return demand(who, check)
    return dep


#: Leased calls: workers, users on their own (local) runs — checked per run — and an
#: attempt's own credential, on that attempt alone (:func:`check_attempt`).
REPORT: Check = (lambda p: p.role in (Role.WORKER, Role.USER, Role.OPERATOR, Role.ATTEMPT),
                 "report for an attempt")

#: Read access: viewer, user, operator.
viewer = _require((lambda p: p.at_least(Role.VIEWER), "read runs"))
#: Submit and manage one's own runs.
user = _require((lambda p: p.at_least(Role.USER), "submit or change runs"))
#: Operators only.
operator = _require((lambda p: p.is_operator, "do this (operator only)"))
#: Worker endpoints: workers and operators (an operator token may run a local agent).
worker = _require((lambda p: p.role in (Role.WORKER, Role.OPERATOR), "act as a worker"))
lease_holder = _require(REPORT)
#: A Kubeflow trainer status (no lease: the training process never holds one): an attempt's
#: own credential, for its attempt alone (:func:`check_attempt`), and operators.
trainer = _require((lambda p: p.role in (Role.ATTEMPT, Role.OPERATOR),
                    "post a trainer status (an attempt's own credential may)"))


def check_attempt(who: Principal, attempt_id: str, run_id: str | None = None) -> None:
    """An attempt's own credential acts on its attempt (and that attempt's run) only."""
    if who.role is not Role.ATTEMPT:
        return
    if who.attempt_id != attempt_id or (run_id is not None and who.run_id != run_id):
        raise errors.Forbidden(
            f"this credential belongs to attempt {who.attempt_id} of run {who.run_id}; it may "
            f"not act on attempt {attempt_id}" + (f" of run {run_id}" if run_id else ""))


def may_see_env(who: Principal, run: Row) -> bool:
    """A run's env values are its owner's secrets (API keys live there): the owner, operators
    and workers (which must run it) see them; everyone else sees the names only."""
    return who.is_operator or who.role is Role.WORKER or run.get("owner") == who.name


def check_host(who: Principal, host_id: str, stored: Callable[[], Row | None]) -> None:
    """403 unless ``who`` may act as ``host_id``: a worker token only within its binding
    (``stored`` reads the token's row when the request saw it unbound: it may have been bound
    since). Human roles are not bound (operators run local agents; users never claim)."""
    if who.role is not Role.WORKER:
        return
    patterns = who.hosts
    if patterns is None:
        row = stored()
        patterns = enrolment.decode(row.get("hosts")) if row else None
    if patterns is None:
        raise errors.Forbidden(f"worker token {who.name!r} is bound to no host yet: it may "
                               f"not act as host {host_id!r} before it has claimed as one",
                               field="host_id")
    if not enrolment.allows(patterns, host_id):
        raise enrolment.refuse_host(who.name, patterns, host_id)


def check_owner(who: Principal, run: Row, what: str) -> None:
    """A user acts only on runs it owns; operators on all; workers through their lease."""
    if who.is_operator or who.role is Role.WORKER:
        return
    if run.get("owner") != who.name:
        raise errors.Forbidden(
            f"token {who.name!r} may not {what} run {run['id']}: it belongs to "
            f"{run.get('owner')!r}")


def check_delete(who: Principal, run: Row) -> None:
    """Operators delete any run; a user only a local run it owns (one it started by hand,
    whose files are its own); nobody else any."""
    if who.is_operator:
        return
    if who.role is Role.USER and run.get("owner") == who.name and run.get("executor") == "local":
        return
    if who.role is Role.USER and run.get("owner") == who.name:
        raise errors.Forbidden(
            f"token {who.name!r} may not delete run {run['id']}: users delete only their own "
            f"local runs, and this one ran on the {run.get('executor')!r} executor (ask an "
            "operator)")
    raise errors.Forbidden(
        f"token {who.name!r} ({who.role.value}) may not delete run {run['id']}: it belongs "
        f"to {run.get('owner')!r}")
