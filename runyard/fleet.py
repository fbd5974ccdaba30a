"""The fleet's workers as the queue knows them: registration with capabilities, drain,
removal, and the operator's host policies (docs/scheduling.md). Claims read what is recorded here
(:mod:`runyard.claiming`); the run lifecycle (:mod:`runyard.queue`) does not write it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from runyard import enrolment, errors, models
from runyard.store.base import Row, Store, Transaction


class Fleet:
    """Writes of the worker registry over a :class:`Store`, one transaction each."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time,
                 limits: enrolment.Limits | None = None) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits or enrolment.Limits()

    def register(self, caps: models.Capabilities, *, token_name: str | None = None,
                 worker_token: bool = False, bound: Sequence[str] | None = None) -> Row:
        """Record (or refresh) a worker's capabilities; drain state is kept across restarts.

        A ``worker_token`` registers only hosts its binding allows and at most its cap of
        them; one not bound yet is bound to this host (trust on first use). ``bound`` is the
        binding the caller's token was seen with, already checked against this host by the
        caller; None sends the registration past the stored binding. Refused (403), nothing
        changes.
        """
        now = self.clock()
        host = caps.host_id
        values = {"hostname": caps.hostname, "capabilities": caps.to_dict(),
                  "has_cuda": caps.has_cuda, "slots": caps.slots, "token_name": token_name,
                  "last_seen_at": now}
        with self.store.transaction() as tx:
            # Every claim refreshes its worker: that is one UPDATE when this token registered
            # the host already; only a new registration reads the token and the counts.
            known = (token_name is not None and (bound is not None or not worker_token)
                     and tx.refresh_worker(host, token_name, values))
            if not known:
                if worker_token:
                    assert token_name is not None
                    self._admit(tx, token_name, host)
                self._check_total(tx, host)
                tx.upsert_worker({"host_id": host, "registered_at": now, **values})
            w = tx.worker_state(host)
        assert w is not None
        return w

    def _admit(self, tx: Transaction, token_name: str, host: str) -> None:
        """Check (or, on first use, set) a worker token's binding and its cap of hosts."""
        tok = tx.lock_token(token_name)
        if tok is None:  # revoked since the request was authenticated
            raise errors.AuthError("invalid or revoked token")
        patterns = enrolment.decode(tok["hosts"])
        if patterns is None:
            # Locked above, so no other registration of this token binds it meanwhile.
            patterns = (host,)
            tx.bind_token(token_name, host)
        elif not enrolment.allows(patterns, host):
            raise enrolment.refuse_host(token_name, patterns, host)
        cap = tok["max_hosts"] or self.limits.max_hosts_per_token
        held = tx.count_workers(token_name=token_name, besides=host)
        if held >= cap:
            raise errors.Forbidden(
                f"worker token {token_name!r} has registered {held} hosts, as many as it may "
                f"(max_hosts {cap}); host {host!r} is refused. Remove the workers it no longer "
                "runs (runyard workers rm HOST) or create a token with a higher --max-hosts",
                field="host_id")

    def _check_total(self, tx: Transaction, host: str) -> None:
        total = tx.count_workers(besides=host)
        if total >= self.limits.max_workers:
            raise errors.Forbidden(
                f"the server has registered {total} workers, as many as it may "
                f"(--max-workers {self.limits.max_workers}); host {host!r} is refused. "
                "Remove workers that are gone (runyard workers rm HOST)", field="host_id")

    def set_drained(self, host_id: str, drained: bool) -> None:
        """Drain (finish what runs, claim nothing new) or resume a worker."""
        with self.store.transaction() as tx:
            if not tx.update_worker(host_id, {"drained": drained}):
                raise errors.NotFound(f"no worker {host_id!r}")

    def remove(self, host_id: str) -> None:
        """Forget a worker; refused while it holds an active attempt. It registers again
        when it next claims."""
        with self.store.transaction() as tx:
            if tx.delete_idle_workers(host_id=host_id):
                return
            if tx.worker_state(host_id) is None:
                raise errors.NotFound(f"no worker {host_id!r}")
            held = tx.active_attempts_on(host_id)
        names = ", ".join(f"run {a['run_id']} attempt {a['number']} ({a['id']})" for a in held)
        raise errors.Conflict(
            f"worker {host_id!r} holds active attempts: {names}; stop them, or drain the "
            "worker and wait for them to end, before deleting it",
            attempts=[{"id": a["id"], "run_id": a["run_id"], "number": a["number"]}
                      for a in held])

    def forget(self, *, seen_before: float) -> list[str]:
        """Remove the workers last seen before ``seen_before`` that hold no active attempt;
        returns their host ids."""
        with self.store.transaction() as tx:
            return tx.delete_idle_workers(seen_before=seen_before)

    def set_host_policies(self, policies: Iterable[models.HostPolicy],
                          source: str | None = None) -> None:
        """Create or update host policies in place (from a manifest reload)."""
        now = self.clock()
        with self.store.transaction() as tx:
            for p in policies:
                tx.upsert_host_policy({
                    "host_id": p.host_id, "allow": list(p.allow), "deny": list(p.deny),
                    "slots": p.slots, "labels": dict(p.labels), "source": source,
                    "updated_at": now,
                })
