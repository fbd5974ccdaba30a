"""What every route needs, built once per app: store, queue, blob store, auth, metrics,
the notification deliverer."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from runyard import errors, models
from runyard.artifacts import BlobStore
from runyard.queue import Queue
from runyard.rules.engine import Engine
from runyard.server.auth import TokenAuth
from runyard.server.deliverer import Deliverer
from runyard.server.eventhub import EventHub
from runyard.server.metrics_prom import ServerMetrics
from runyard.server.settings import Settings
from runyard.store.base import Row, Store


@dataclass
class ServerState:
    settings: Settings
    store: Store
    queue: Queue
    blobs: BlobStore
    auth: TokenAuth
    metrics: ServerMetrics
    #: The event streams' shared database poller.
    events: EventHub
    #: The rule engine (docs/rules.md), the queue's observer.
    rules: Engine
    #: Sends the notification outbox; ``deliverer.enqueue(...)`` queues a notification.
    deliverer: Deliverer

    def run_or_404(self, run_id: str) -> Row:
        run = self.store.get_run(run_id)
        if run is None:
            raise errors.NotFound(f"no run {run_id!r}")
        return run

    def check_lease(self, attempt_id: str, lease: str, run_id: str | None = None
                    ) -> tuple[Row, Row]:
        """Read-only fencing for data-plane calls (metrics, logs, artifacts, checkpoints):
        the lease must be the attempt's and the attempt the run's current one -> (run, attempt).

        State changes go through the queue, which fences again under its row locks.
        """
        found = self.store.get_attempt_and_run(attempt_id)
        if found is None:
            raise errors.NotFound(f"no attempt {attempt_id!r}")
        att, run = found
        if run_id is not None and att["run_id"] != run_id:
            raise errors.LeaseConflict(f"attempt {attempt_id} does not belong to run {run_id}")
        if not models.leases_match(att["lease"], lease):
            raise errors.LeaseConflict(f"attempt {attempt_id}: the lease does not match")
        if run is None:
            raise errors.NotFound(f"no run {att['run_id']!r}")
        if not att["active"] or run["attempt_id"] != attempt_id:
            raise errors.LeaseConflict(
                f"attempt {attempt_id} of run {run['id']} is no longer active; "
                f"the run is {run['status']}")
        return run, att


async def get_state(request: Request) -> ServerState:
    """The app's state (a coroutine, so FastAPI calls it without a worker-thread hop)."""
    state: ServerState = request.app.state.runyard
    return state
