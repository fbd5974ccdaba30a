"""``runyard agent``: the claim loop of one host (docs/architecture.md, docs/lifecycle.md,
docs/scheduling.md).

The main thread claims; each claimed attempt runs in its own thread under an
:class:`~runyard.agent.attempt.AttemptRunner`, up to ``slots`` at once. When idle (204) or
when the server cannot be reached the loop backs off with full jitter, so a fleet does not
poll in lockstep. A drained worker gets 204 too: it keeps its running attempts and claims
nothing. The first SIGTERM/SIGINT stops claiming and gives every running process its stop
grace period, then reports those attempts as ``worker_shutdown`` (so they requeue); a second
signal kills them at once.

Files and directories: each attempt's protocol files, logs and artifacts live under
``<work-dir>/<run_id>/<attempt>/``; its command runs in the directory the agent was started
in (the checkout whose git commit it reports), so relative paths in a manifest's commands
mean what the operator reads.

A training process outlives an agent killed outright (it has its own session); the next
agent started on the same work directory stops it first (:mod:`runyard.agent.orphans`).

GPUs: each attempt gets its own via ``CUDA_VISIBLE_DEVICES``. A claim advertises only the
GPUs no attempt holds, so the server never hands this host a run needing more GPUs than are
free (and sends ``prefer_cuda`` runs elsewhere while all of them are busy).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard import defaults, errors, models, sysmetrics
from runyard.agent import attempt as attempt_mod
from runyard.agent import capabilities, isolation, orphans, signals
from runyard.agent.api import Backoff, WorkerAPI
from runyard.agent.assignment import Assignment, AttemptSettings

log = logging.getLogger(__name__)

#: Longest pause between two claims while idle (the server answered 204).
CLAIM_MAX_WAIT_S = 5.0
#: Longest pause between two claims while the server is unreachable.
UNREACHABLE_MAX_WAIT_S = 30.0
#: Step of the main loop while all slots are busy.
BUSY_STEP_S = 0.2


@dataclass(frozen=True)
class AgentConfig:
    """The options of ``runyard agent``."""

    server: str
    token: str | None = None
    host_id: str | None = None
    slots: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    work_dir: Path = field(default_factory=lambda: Path("runyard-work"))
    probe_interval_s: float = defaults.PROBE_INTERVAL_S
    executor: str = "local"
    stop_grace_s: float = defaults.STOP_GRACE_S
    claim_max_wait_s: float = CLAIM_MAX_WAIT_S
    #: Start runs as this OS user (:mod:`runyard.agent.isolation`); None: as the agent's.
    train_as: str | None = None
    #: Seconds between system metric samples of each run (runyard.sysmetrics); 0: none.
    sys_interval_s: float = sysmetrics.DEFAULT_INTERVAL_S

    def validate(self) -> None:
        if self.executor != "local":
            raise errors.ConfigError(
                f"executor: {self.executor!r} is not available in this agent (only 'local')",
                field="executor")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise errors.ValidationError(f"slots: must be at least 1, got {self.slots!r}",
                                         field="slots")
        for name in ("probe_interval_s", "claim_max_wait_s"):
            if not getattr(self, name) > 0:
                raise errors.ValidationError(f"{name}: must be positive, got "
                                             f"{getattr(self, name)!r}", field=name)
        sysmetrics.parse_interval(self.sys_interval_s, "sys_interval_s")
        if self.stop_grace_s < 0:
            raise errors.ValidationError("stop_grace_s: must not be negative",
                                         field="stop_grace_s")


class GpuPool:
    """Which GPU indexes are free; attempts take and give back whole GPUs."""

    def __init__(self, gpus: tuple[models.GPU, ...]) -> None:
        self.all = gpus
        self._free = [g.index for g in gpus]
        self._lock = threading.Lock()

    def free(self) -> tuple[models.GPU, ...]:
        with self._lock:
            return tuple(g for g in self.all if g.index in self._free)

    def take(self, constraints: models.Constraints) -> list[int]:
        """GPUs for a run: ``gpus`` of them, or one if it needs or prefers CUDA."""
        want = constraints.gpus or (1 if constraints.needs_cuda or constraints.prefer_cuda
                                    else 0)
        with self._lock:
            if want > len(self._free):
                if constraints.gpus or constraints.require_cuda:
                    log.warning("run needs %d GPUs but only %d are free", want, len(self._free))
                want = len(self._free)
            taken, self._free = self._free[:want], self._free[want:]
            return taken

    def give_back(self, indexes: list[int]) -> None:
        with self._lock:
            self._free = sorted(set(self._free) | set(indexes))


class Agent:
    """One host's daemon: :meth:`run` until a stop signal (or :meth:`request_stop`)."""

    def __init__(self, config: AgentConfig, api: WorkerAPI | None = None) -> None:
        config.validate()
        self.config = config
        self.api = api or WorkerAPI(config.server, config.token)
        # The git commit reported is the checkout the agent runs in, as ``--check`` shows it.
        self.caps = capabilities.detect(host_id=config.host_id, labels=config.labels,
                                        slots=config.slots, workdir=os.getcwd())
        self.host_id = self.caps.host_id
        self.gpus = GpuPool(self.caps.gpus)
        self.runners: dict[str, tuple[attempt_mod.AttemptRunner, threading.Thread,
                                      list[int]]] = {}
        self.settings = AttemptSettings(
            host_id=self.host_id, work_dir=config.work_dir.resolve(),
            probe_interval_s=config.probe_interval_s, stop_grace_s=config.stop_grace_s,
            run_cwd=Path.cwd(), sys_interval_s=config.sys_interval_s,
            train_user=isolation.TrainUser.resolve(config.train_as) if config.train_as
            else None)
        self.claimed = 0
        self._manual_stop = signals.StopSignals()

    # --- claims -----------------------------------------------------------------------------

    def _claim_capabilities(self) -> dict[str, Any]:
        caps = dataclasses.replace(self.caps, gpus=self.gpus.free())
        data = caps.to_dict()
        data["gpus_total"] = len(self.caps.gpus)
        return data

    def free_slots(self) -> int:
        return self.config.slots - len(self.runners)

    def claim_once(self) -> attempt_mod.AttemptRunner | None:
        """Claim one run and start it; None when nothing is eligible."""
        body = self.api.claim(self.host_id, self._claim_capabilities(), self.free_slots())
        if body is None:
            return None
        try:
            assignment = Assignment.from_claim(body)
        except errors.ValidationError as exc:
            # A claim we cannot read is a server bug; its lease lapses and the run requeues.
            log.error("unreadable claim answer: %s", exc.message)
            return None
        gpus = self.gpus.take(assignment.constraints)
        runner = attempt_mod.AttemptRunner(assignment, self.api, self.settings, gpus)
        thread = threading.Thread(target=runner.run, daemon=True,
                                  name=f"attempt-{assignment.run_id}-{assignment.number}")
        self.runners[assignment.attempt_id] = (runner, thread, gpus)
        self.claimed += 1
        log.info("claimed run %s (%s) attempt %d%s", assignment.run_id,
                 assignment.run.get("name"), assignment.number,
                 f" on GPUs {gpus}" if gpus else "")
        thread.start()
        return runner

    def reap(self) -> None:
        """Forget finished attempts and free their slots and GPUs."""
        for key, (runner, thread, gpus) in list(self.runners.items()):
            if runner.finished and not thread.is_alive():
                del self.runners[key]
                self.gpus.give_back(gpus)

    # --- the loop ---------------------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        """Stop as a signal would (for callers without signals, e.g. tests in-process)."""
        self._manual_stop.handle(0)
        if force:
            self._manual_stop.handle(0)

    def run(self) -> int:
        """Claim and supervise until stopped; returns the process exit code."""
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        # Before claiming: what a dead predecessor on this work dir left running trains for
        # nobody now (its attempts end as lost), so stop it.
        orphans.reap(self.settings.work_dir)
        fake = [what for what in ("gpus", "ram") if self.caps.extra.get(f"fake_{what}")]
        # The self-test of `runyard agent --check`, in the journal before the first claim
        # registers this host.
        log.info("capabilities:\n%s", capabilities.format_check(self.caps))
        log.info("agent %s: server %s, %d slot(s), %d GPU(s)%s, work dir %s", self.host_id,
                 self.api.server, self.config.slots, len(self.caps.gpus),
                 f" (FAKE {'/'.join(fake)}, for tests)" if fake else "", self.settings.work_dir)
        with signals.on_stop() as stop:
            try:
                self._loop(stop)
            finally:
                self._shutdown(stop)
                self.api.close()
        return 0

    def _stopping(self, stop: signals.StopSignals) -> bool:
        return stop.graceful.is_set() or self._manual_stop.graceful.is_set()

    def _loop(self, stop: signals.StopSignals) -> None:
        idle = Backoff(base=0.1, cap=self.config.claim_max_wait_s, minimum=0.05)
        down = Backoff(base=0.5, cap=UNREACHABLE_MAX_WAIT_S, minimum=0.1)
        while not self._stopping(stop):
            self.reap()
            if self.free_slots() <= 0:
                self._wait(stop, BUSY_STEP_S)
                continue
            try:
                runner = self.claim_once()
            except errors.TransportError as exc:
                delay = down.next_delay()
                log.warning("claim failed (%s); retrying in %.1f s", exc.message, delay)
                self._wait(stop, delay)
                continue
            except errors.RunyardError as exc:
                # Bad token, unknown host...: say it clearly, keep trying slowly.
                delay = down.next_delay()
                log.error("claim refused: %s; retrying in %.1f s", exc.message, delay)
                self._wait(stop, delay)
                continue
            down.reset()
            if runner is None:
                self._wait(stop, idle.next_delay())
            else:
                idle.reset()

    def _wait(self, stop: signals.StopSignals, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping(stop) and time.monotonic() < deadline:
            self.reap()
            time.sleep(min(signals.WAIT_STEP_S, max(deadline - time.monotonic(), 0)))

    def _shutdown(self, stop: signals.StopSignals) -> None:
        """Stop every attempt (grace, then worker_shutdown); a second signal forces."""
        if not self.runners:
            return
        log.warning("agent stopping: %d attempt(s) get %.3g s to stop", len(self.runners),
                    self.config.stop_grace_s)
        for runner, _, _ in self.runners.values():
            runner.shutdown()
        forced = False
        while True:
            self.reap()
            if not self.runners:
                return
            if not forced and (stop.force.is_set() or self._manual_stop.force.is_set()):
                forced = True
                log.warning("second stop signal: killing %d attempt(s) now", len(self.runners))
                for runner, _, _ in self.runners.values():
                    runner.shutdown(force=True)
            if forced:
                # Give the reports a moment, then leave whatever is still talking.
                for _, thread, _ in list(self.runners.values()):
                    thread.join(timeout=5.0)
                return
            time.sleep(signals.WAIT_STEP_S)
