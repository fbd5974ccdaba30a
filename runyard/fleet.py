"""The fleet's workers as the queue knows them: registration with capabilities, drain,
removal, and the operator's host policies (docs/scheduling.md). Claims read what is recorded here
(:mod:`runyard.claiming`); the run lifecycle (:mod:`runyard.queue`) does not write it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from runyard import errors, models
from runyard.store.base import Row, Store


class Fleet:
    """Writes of the worker registry over a :class:`Store`, one transaction each."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def register(self, caps: models.Capabilities, *, token_name: str | None = None) -> Row:
        """Record (or refresh) a worker's capabilities; drain state is kept across restarts."""
        now = self.clock()
        with self.store.transaction() as tx:
            tx.upsert_worker({
                "host_id": caps.host_id, "hostname": caps.hostname,
                "capabilities": caps.to_dict(), "has_cuda": caps.has_cuda, "slots": caps.slots,
                "token_name": token_name, "registered_at": now, "last_seen_at": now,
            })
            w = tx.worker_state(caps.host_id)
        assert w is not None
        return w

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
