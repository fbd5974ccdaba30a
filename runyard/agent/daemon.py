"""``runyard agent``: the claim loop of one host (docs/architecture.md, docs/lifecycle.md,
docs/scheduling.md, docs/executors.md).

The main thread claims while the agent's executor (:mod:`runyard.agent.executor`) has room,
and hands each claimed attempt to it: the local executor runs it as a process on this host
under an :class:`~runyard.agent.attempt.AttemptRunner` thread
(:mod:`runyard.agent.local_executor`); others run it elsewhere. When idle (204) or when the
server cannot be reached the loop backs off with full jitter, so a fleet does not poll in
lockstep. A drained worker gets 204 too: it keeps its running attempts and claims nothing.
The first SIGTERM/SIGINT stops claiming and gives every running process its stop grace
period, then reports those attempts as ``worker_shutdown`` (so they requeue); a second
signal kills them at once. An executor whose attempts outlive the agent (Slurm jobs) leaves
them running instead, and its next start finds them again (:meth:`Executor.reattach`).

Files and directories: each local attempt's protocol files, logs and artifacts live under
``<work-dir>/<run_id>/<attempt>/``; its command runs in the directory the agent was started
in (the checkout whose git commit it reports), so relative paths in a manifest's commands
mean what the operator reads.
"""

from __future__ import annotations

import logging
import time

from runyard import errors
from runyard.agent import executor as executors
from runyard.agent import signals
from runyard.agent.api import Backoff, WorkerAPI
from runyard.agent.assignment import Assignment
from runyard.agent.config import CLAIM_MAX_WAIT_S, AgentConfig
from runyard.agent.executor import Executor, Handle
from runyard.agent.local_executor import GpuPool

__all__ = ["CLAIM_MAX_WAIT_S", "Agent", "AgentConfig", "GpuPool"]

log = logging.getLogger(__name__)

#: Longest pause between two claims while the server is unreachable.
UNREACHABLE_MAX_WAIT_S = 30.0
#: Step of the main loop while all slots are busy.
BUSY_STEP_S = 0.2


class Agent:
    """One host's daemon: :meth:`run` until a stop signal (or :meth:`request_stop`)."""

    def __init__(self, config: AgentConfig, api: WorkerAPI | None = None,
                 executor: Executor | None = None) -> None:
        config.validate()
        self.config = config
        self.api = api or WorkerAPI(config.server, config.token)
        self.executor = executor or executors.create(config, self.api)
        self.host_id = self.executor.host_id
        #: The attempts the executor holds, by attempt id.
        self.handles: dict[str, Handle] = {}
        self.claimed = 0
        self._manual_stop = signals.StopSignals()

    # --- claims -----------------------------------------------------------------------------

    def free_slots(self) -> int:
        return self.executor.max_in_flight() - len(self.handles)

    def claim_once(self) -> Handle | None:
        """Claim one run and start it; None when nothing is eligible."""
        body = self.api.claim(self.host_id, self.executor.capabilities(), self.free_slots())
        if body is None:
            return None
        try:
            assignment = Assignment.from_claim(body)
        except errors.ValidationError as exc:
            # A claim we cannot read is a server bug; its lease lapses and the run requeues.
            log.error("unreadable claim answer: %s", exc.message)
            return None
        self.claimed += 1
        log.info("claimed run %s (%s) attempt %d", assignment.run_id,
                 assignment.run.get("name"), assignment.number)
        handle = self.executor.start(assignment)
        self.handles[assignment.attempt_id] = handle
        return handle

    def reap(self) -> None:
        """Forget finished attempts and free their slots."""
        self.executor.tick()
        for key, handle in list(self.handles.items()):
            if self.executor.poll(handle).finished:
                del self.handles[key]

    # --- the loop ---------------------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        """Stop as a signal would (for callers without signals, e.g. tests in-process)."""
        self._manual_stop.handle(0)
        if force:
            self._manual_stop.handle(0)

    def run(self) -> int:
        """Claim and supervise until stopped; returns the process exit code."""
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        # The self-test of `runyard agent --check`, in the journal before the first claim
        # registers this host.
        log.info("capabilities:\n%s", self.executor.check_text())
        log.info("agent %s (%s executor): server %s, %s", self.host_id, self.executor.name,
                 self.api.server, self.executor.describe())
        # Before claiming: what a predecessor left (local processes are stopped, jobs that
        # outlive an agent are taken over).
        for handle in self.executor.reattach():
            self.handles[handle.attempt_id] = handle
            log.info("reattached run %s attempt %d (%s)", handle.run_id, handle.number,
                     handle.external_id or "no external id")
        with signals.on_stop() as stop:
            try:
                self._loop(stop)
            finally:
                self._shutdown(stop)
                self.executor.close()
                self.api.close()
        return 0

    def _stopping(self, stop: signals.StopSignals) -> bool:
        return stop.graceful.is_set() or self._manual_stop.graceful.is_set()

    def _loop(self, stop: signals.StopSignals) -> None:
        idle = Backoff(base=0.1, cap=self.config.idle_claim_cap_s, minimum=0.05)
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
        """Stop every attempt (grace, then worker_shutdown); a second signal forces. An
        executor whose attempts outlive the agent leaves them running."""
        if not self.handles:
            return
        if self.executor.detach_on_exit:
            log.warning("agent stopping: %d attempt(s) keep running under the %s executor; "
                        "the next agent takes them over", len(self.handles), self.executor.name)
            return
        log.warning("agent stopping: %d attempt(s) get %.3g s to stop", len(self.handles),
                    self.config.stop_grace_s)
        for handle in self.handles.values():
            self.executor.signal(handle, grace_s=self.config.stop_grace_s)
        forced = False
        while True:
            self.reap()
            if not self.handles:
                return
            if not forced and (stop.force.is_set() or self._manual_stop.force.is_set()):
                forced = True
                log.warning("second stop signal: killing %d attempt(s) now", len(self.handles))
                for handle in self.handles.values():
                    self.executor.signal(handle, grace_s=0.0, force=True)
            if forced:
                # Give the reports a moment, then leave whatever is still talking.
                for handle in list(self.handles.values()):
                    self.executor.join(handle, timeout=5.0)
                return
            time.sleep(signals.WAIT_STEP_S)
