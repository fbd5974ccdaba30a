"""Claiming: which queued run each asking worker gets, and the attempt that holds it.

Claims made at the same time are served together (see :mod:`runyard.combining`): one
transaction, a few statements and one commit for a whole batch, each claim answered as if it
had been made alone, in arrival order. The rules of what a claim may take are
:mod:`runyard.eligibility`'s; the lifecycle around a claim (heartbeats, endings) is
:mod:`runyard.queue`'s. See docs/scheduling.md.

The claims of a batch share their candidate pages: the workers of a fleet fall into a few
kinds, so the first page of each distinct worker filter is read once, all of them together
as the batch starts (one round trip on PostgreSQL), instead of once per claim. Under load a
batch holds many claims of few kinds, and a query per claim would be most of its time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from runyard import eligibility, errors, models, submission
from runyard.combining import Combiner
from runyard.store.base import Grant, Row, Store, Transaction, WorkerFilter


@dataclass(frozen=True)
class Claim:
    """What a worker gets from a successful claim."""

    run: Row
    attempt_id: str
    attempt: int
    lease: str
    lease_expires_at: float
    #: The attempt's own credential (docs/security.md): handed out once, in the claim answer.
    attempt_token: str | None = None


@dataclass(frozen=True, slots=True)
class Ask:
    """One worker's claim, waiting to be served in a batch."""

    host_id: str
    free_slots: int | None
    actor: str


ATTEMPT_TOKEN_PREFIX = models.ATTEMPT_TOKEN_PREFIX


def attempt_token_hash(secret: str) -> str:
    """What the store keeps of an attempt's credential (as of a token: its sha256)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def grant(run: Row, host_id: str, now: float, actor: str, lease_s: float,
          token: str | None = None) -> Grant:
    """The next attempt of ``run`` (as read in this transaction) for ``host_id``, with a
    fresh lease that lapses ``lease_s`` from ``now`` (and the hash of ``token``, the
    attempt's own credential, when one is given)."""
    return Grant(run_id=run["id"], attempt_id=submission.new_id(),
                 number=int(run["attempt"]) + 1, seq=int(run["event_seq"]) + 1,
                 host_id=host_id, lease=secrets.token_hex(16),
                 lease_expires_at=now + lease_s, at=now, actor=actor,
                 token_hash=None if token is None else attempt_token_hash(token))


def new_attempt_token() -> str:
    return ATTEMPT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def claim_of(run: Row, g: Grant, token: str | None = None) -> Claim:
    """The worker's answer for the run it was granted (``run`` as read before the grant)."""
    return Claim({**run, "attempt": g.number, "event_seq": g.seq}, g.attempt_id, g.number,
                 g.lease, g.lease_expires_at, token)


class _Picker:
    """Chooses runs for the claims of one batch from candidate pages shared by worker filter
    (see the module's docstring); a run taken by an earlier claim of the batch is passed
    over."""

    def __init__(self, tx: Transaction, claim_scan: int, cuda_free: dict[str, int]) -> None:
        self.tx = tx
        self.claim_scan = claim_scan
        self.taken: set[str] = set()
        self.granted: dict[str, int] = {}
        self._pages: dict[WorkerFilter, tuple[list[Row], bool]] = {}
        # Free slots of the live CUDA workers (``prefer_cuda`` runs wait for them), kept up
        # to date with the batch's own claims, which are not written yet.
        self._cuda_free = cuda_free

    def worker_filter(self, caps: models.Capabilities, policy: models.HostPolicy | None
                      ) -> WorkerFilter:
        """What the candidates query asks for this worker, as the batch stands now."""
        return WorkerFilter(has_cuda=caps.has_cuda, gpus=len(caps.gpus),
                            max_vram_gib=caps.max_vram_gib, ram_gib=caps.ram_gib,
                            cpus=caps.cpus, skip_prefer_cuda=self._skips_prefer_cuda(caps),
                            labels_keys=eligibility.served_labels_keys(
                                eligibility.effective_labels(caps, policy)),
                            executor=models.run_executor_served(caps.executor))

    def _skips_prefer_cuda(self, caps: models.Capabilities) -> bool:
        """A worker without CUDA leaves ``prefer_cuda`` runs while a CUDA worker has room."""
        return not caps.has_cuda and any(n > 0 for n in self._cuda_free.values())

    def prefetch(self, wanted: Mapping[WorkerFilter, int]) -> None:
        """Read the first candidates page of each of these filters at once (one round trip
        on PostgreSQL); the counts are the claims expected to read it."""
        todo = [(wf, min(self.claim_scan, max(8, 2 * n))) for wf, n in wanted.items()]
        for (wf, size), page in zip(todo, self.tx.claim_candidates_many(todo), strict=True):
            self._pages[wf] = (page, len(page) < size)

    def pick(self, caps: models.Capabilities, policy: models.HostPolicy | None,
             wf: WorkerFilter) -> Row | None:
        """The best run this worker may take, marked taken (and counted against its slots);
        None when there is none. ``wf`` is its :meth:`worker_filter` from earlier in the
        batch: only whether it skips ``prefer_cuda`` runs may have changed since."""
        skip = self._skips_prefer_cuda(caps)
        if skip != wf.skip_prefer_cuda:
            wf = dataclasses.replace(wf, skip_prefer_cuda=skip)
        rows, done = self._pages.get(wf) or ([], False)
        i = 0
        while True:
            for cand in rows[i:]:
                if cand["id"] in self.taken:
                    continue
                constraints = json.loads(cand["constraints"])
                if not eligibility.unmet({**cand, "constraints": constraints}, caps, policy):
                    self._take(cand["id"], caps.host_id)
                    self._pages[wf] = (rows, done)
                    return {**cand, "constraints": constraints}
            i = len(rows)
            if done:
                self._pages[wf] = (rows, done)
                return None
            # The SQL prefilter leaves few runs this worker cannot take: a short first page
            # (each candidate is a decoded row), twice as long each time past a run of
            # ineligible runs or of runs taken by this batch.
            size = min(self.claim_scan, max(8, 2 * len(rows)))
            last = rows[-1] if rows else None
            page = self.tx.claim_candidates(
                wf, None if last is None else (last["priority"], last["created_at"],
                                               last["id"]), size)
            rows = rows + page
            done = len(page) < size

    def _take(self, run_id: str, host_id: str) -> None:
        self.taken.add(run_id)
        self.granted[host_id] = self.granted.get(host_id, 0) + 1
        if host_id in self._cuda_free:
            self._cuda_free[host_id] -= 1


class Claimer:
    """Serves the claims of workers over a :class:`Store`, batching those made together."""

    def __init__(self, store: Store, *, lease_s: float, claim_scan: int,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.lease_s = lease_s
        self.claim_scan = claim_scan
        self.clock = clock
        self._combiner: Combiner[Ask, Claim | None] = Combiner(self.serve)

    def claim(self, ask: Ask) -> Claim | None:
        """Serve ``ask``, alone or batched with the claims made meanwhile."""
        return self._combiner.call(ask)

    def serve(self, asks: Sequence[Ask]) -> list[Claim | None | BaseException]:
        """Answer a batch of asks in one transaction, in order: a claim, None (nothing to
        take) or the error of that ask alone."""
        now = self.clock()
        out: list[Claim | None | BaseException] = [None] * len(asks)
        with self.store.transaction() as tx:
            states, cuda_free = tx.claim_view([a.host_id for a in asks], now - self.lease_s)
            picker = _Picker(tx, self.claim_scan, cuda_free)
            # The asks of registered, undrained workers with a free slot before this batch,
            # with their worker's capabilities, policy, free slots and filter.
            serving: list[tuple[int, Ask, models.Capabilities, models.HostPolicy | None,
                                int, WorkerFilter]] = []
            for i, ask in enumerate(asks):
                w = states.get(ask.host_id)
                if w is None:
                    out[i] = errors.NotFound(f"worker {ask.host_id!r} is not registered")
                    continue
                if w["drained"]:
                    continue
                caps = models.Capabilities.from_dict(w["capabilities"])
                policy = eligibility.policy_from_row(w)
                free = eligibility.effective_slots(caps, policy) - int(w["active_attempts"])
                if ask.free_slots is not None:
                    free = min(free, ask.free_slots)
                if free > 0:
                    serving.append((i, ask, caps, policy, free,
                                    picker.worker_filter(caps, policy)))
            # Every worker filter's first page in one go, as the batch starts: a filter that
            # changes on the way (the last free CUDA slot taken) reads its own when needed.
            picker.prefetch(Counter(wf for *_, wf in serving))
            grants: list[Grant] = []
            for i, ask, caps, policy, free, wf in serving:
                if free <= picker.granted.get(ask.host_id, 0):
                    continue
                run = picker.pick(caps, policy, wf)
                if run is None:
                    continue
                token = new_attempt_token()
                g = grant(run, ask.host_id, now, ask.actor, self.lease_s, token)
                grants.append(g)
                out[i] = claim_of(run, g, token)
            tx.claim_runs(grants)
        return out
