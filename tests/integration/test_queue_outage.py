"""The server's own outage costs no run: after it, every active lease gets a fresh grace
before any lease is judged again (a server restart, or a database that was out of reach)."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.server.sweeper import Sweeper
from runyard.store import open_store

from ..support.factories import caps, submit


def _running(q: Queue) -> tuple[str, str, str]:
    q.fleet.register(caps("a"))
    run = submit(q)
    claim = q.claim("a")
    assert claim is not None
    q.heartbeat(claim.attempt_id, claim.lease, running=True)
    return run["id"], claim.attempt_id, claim.lease


def test_after_an_outage_a_lapsed_lease_gets_a_grace_instead_of_being_lost(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    run_id, attempt_id, lease = _running(q)
    now[0] += 90  # the server was down three leases long
    q.note_outage()
    order = q.heartbeat(attempt_id, lease)  # the agent comes back: same attempt, same lease
    assert order.lease_expires_at == now[0] + 30 and not order.stop
    assert q.sweep().lost == []
    run = q.store.get_run(run_id)
    assert run is not None and run["status"] == "running" and run["attempt"] == 1
    q.complete(attempt_id, lease)
    assert q.store.get_run(run_id)["termination_reason"] == "completed"  # type: ignore[index]


def test_the_grace_is_granted_once_and_does_not_keep_a_dead_agent_alive(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    run_id, attempt_id, lease = _running(q)
    now[0] += 90
    q.note_outage()
    assert q.grant_grace_if_due() == 1
    assert q.grant_grace_if_due() == 0
    now[0] += 31  # the agent never came back
    assert q.sweep().lost == [run_id]
    with pytest.raises(errors.LeaseConflict):
        q.heartbeat(attempt_id, lease)


def test_without_an_outage_a_lapsed_lease_is_lost(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    run_id, attempt_id, lease = _running(q)
    now[0] += 31
    with pytest.raises(errors.LeaseConflict):
        q.heartbeat(attempt_id, lease)
    assert q.store.list_attempts(run_id)[0]["termination_reason"] == "lost"


def test_the_sweeper_grants_the_grace_when_the_server_starts(store) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    run_id, attempt_id, lease = _running(q)
    now[0] += 90  # the server was down
    sweeper = Sweeper(q, interval_s=3600)
    sweeper.start()  # the grace first, then a sweep that loses nothing
    try:
        attempt = q.store.list_attempts(run_id)[0]
        assert attempt["active"] and attempt["lease_expires_at"] == now[0] + 30
        q.heartbeat(attempt_id, lease)
    finally:
        sweeper.stop()


def test_a_database_outage_under_a_running_server_costs_no_run(pg_databases) -> None:  # type: ignore[no-untyped-def]
    """The real PostgreSQL refuses every connection for a while: the sweeps fail, and the
    first one after it grants the grace before it judges any lease."""
    url = pg_databases.new()
    name = url.rsplit("/", 1)[1]
    store = open_store(url, upgrade=False)
    now = [1000.0]
    q = Queue(store, stale_after_s=30, clock=lambda: now[0])
    sweeper = Sweeper(q, interval_s=3600)
    try:
        run_id, attempt_id, lease = _running(q)
        with pg_databases._admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            try:
                sweeper.tick()  # fails: the database is out of reach
                with pytest.raises(errors.RunyardError):
                    q.heartbeat(attempt_id, lease)  # and so are the agent's heartbeats
                now[0] += 90  # longer than the lease
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        sweeper.tick()
        attempt = q.store.list_attempts(run_id)[0]
        assert attempt["active"] and attempt["lease_expires_at"] == now[0] + 30
        q.heartbeat(attempt_id, lease)
    finally:
        store.close()
        pg_databases.drop(url)
