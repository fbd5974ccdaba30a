"""Supervising one claimed attempt, from launch to its report (docs/lifecycle.md,
docs/progress-protocol.md, docs/executors.md).

The one supervision code of Runyard: the local executor runs an :class:`AttemptRunner` on a
thread per attempt, and ``runyard supervise`` (:mod:`runyard.agent.supervise`) runs one in
its own process for an attempt claimed elsewhere (inside a Slurm allocation).

:class:`AttemptRunner` prepares ``<work-dir>/<run_id>/<attempt>/``, renders the command,
launches it under :mod:`runyard.agent.process`, and then, like rq's work horse monitor, waits
on the process one probe interval at a time: each tick reads the protocol files
(:mod:`runyard.agent.probe`) and forwards what changed through the :class:`~runyard.outbox.Outbox`,
from a thread of its own (:mod:`runyard.agent.sender`) so that the next lines are parsed
while the server stores the last batch. Heartbeats go from their own thread, so a slow
upload or a slow server can never starve the lease; their answers bring stop orders and
checkpoint requests (:mod:`runyard.agent.checkpoint_request`). Checkpoints the run registers
are uploaded as they come, from a third thread. After the exit it reads what is left,
uploads the artifact bundle and the last checkpoints, and reports ``complete`` or ``fail`` with
the reason; the server's retry policy decides what happens next. A 409 anywhere means
another worker owns the run now: the process is stopped and the attempt abandoned without
a report.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runyard import errors, models, sysmetrics, timestamps
from runyard.agent import launch, orphans, process, resume, trainer_status, uploads, verdict
from runyard.agent import probe as probe_mod
from runyard.agent.api import Backoff, LeaseLost, WorkerAPI
from runyard.agent.assignment import Assignment, AttemptPaths, AttemptSettings, heartbeat_interval
from runyard.agent.checkpoint_request import RequestFile
from runyard.agent.sender import Sender
from runyard.outbox import Outbox, Spool

log = logging.getLogger(__name__)

#: Grace given to a process whose lease was lost: someone else owns the run now.
LEASE_LOST_GRACE_S = 2.0
#: Longest wait between two checks of the attempt loop (stop flags, lease loss).
LOOP_STEP_S = 0.25


class Outcome(enum.StrEnum):
    """How the agent reported the attempt."""

    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"  # lease lost: no report
    UNREPORTED = "unreported"  # forced shutdown before the report went through


class AttemptRunner:
    """Runs one attempt to its report. :meth:`run` blocks (call it in a thread)."""

    def __init__(self, assignment: Assignment, api: WorkerAPI, settings: AttemptSettings,
                 gpus: Sequence[int] | None = (), *,
                 on_event: Callable[[str, AttemptRunner], None] | None = None) -> None:
        self.a = assignment
        self.api = api
        self.settings = settings
        #: GPUs to give through CUDA_VISIBLE_DEVICES; None leaves the environment's (an
        #: allocation's scheduler set it).
        self.gpus = None if gpus is None else list(gpus)
        self.paths = AttemptPaths(settings.work_dir / assignment.run_id / str(assignment.number))
        self.probe_interval_s = assignment.probe_interval_s or settings.probe_interval_s
        self.hb_interval_s = heartbeat_interval(assignment.stale_after_s)
        self.outcome: Outcome | None = None
        self.reason: str | None = None
        #: Set when the attempt was left for the executor to report
        #: (``report_on_shutdown=False``): why, and what a report would have said.
        self.left: dict[str, Any] | None = None
        self.proc: process.ManagedProcess | None = None
        self.cwd: Path | None = None
        self._on_event = on_event
        self._uploads = uploads.Uploads(api, assignment, self.paths, self._deliver)
        self._request = RequestFile(self.paths.checkpoint_request_file,
                                    self.paths.checkpoints_file)
        self._exited = threading.Event()  # the process exited: live uploads end
        self._logs = probe_mod.LogBuffer()
        self._probe = probe_mod.Probe(self.paths.progress_file, self.paths.metrics_file,
                                      progression_file=self.paths.progression_file)
        self._outbox: Outbox | None = None
        self._sender: Sender | None = None
        self._done = threading.Event()
        self._wake = threading.Event()  # cuts the supervisor's sleep short
        self._lease_lost = False
        self._shutdown = False  # the agent is stopping: report worker_shutdown
        self._exited_at = 0.0  # monotonic: when the supervisor saw the process end
        self._forced = False
        self._stop_ordered: tuple[str | None, float] | None = None
        self._sys: sysmetrics.Recorder | None = None
        self._lock = threading.Lock()

    # --- control from other threads ---------------------------------------------------------

    def shutdown(self, force: bool = False) -> None:
        """The agent is stopping: stop the process (its grace period, or at once)."""
        with self._lock:
            self._shutdown = True
            self._forced = self._forced or force
            proc = self.proc
        if proc is not None:
            if force:
                proc.kill()
            else:
                proc.request_stop(self.settings.stop_grace_s)
        self._wake.set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def _lose_lease(self, where: str, exc: errors.RunyardError) -> None:
        with self._lock:
            first = not self._lease_lost
            self._lease_lost = True
            proc = self.proc
        if first:
            log.warning("run %s attempt %d: lease lost (%s: %s); stopping the process and "
                        "abandoning the attempt", self.a.run_id, self.a.number, where,
                        exc.message)
        if proc is not None:
            proc.request_stop(LEASE_LOST_GRACE_S)
        self._wake.set()

    # --- the attempt ------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Launch, supervise, report. Never raises (one bad run cannot kill the agent)."""
        try:
            self.outcome = self._run()
        except Exception:  # a bug must not leave the run claimed for ever: fail it
            log.exception("run %s attempt %d: agent error", self.a.run_id, self.a.number)
            if self.proc is not None and self.proc.result is None:
                self.proc.kill()
                self.proc.wait(10)
            self.outcome = self._report_safely("fail", reason=models.Reason.SETUP_ERROR.value,
                                               details={"error": "agent error; see its log"})
        finally:
            self._done.set()
            if self._on_event is not None:
                self._on_event("finished", self)
        log.info("run %s attempt %d: %s%s", self.a.run_id, self.a.number, self.outcome,
                 f" ({self.reason})" if self.reason else "")
        return self.outcome

    def _run(self) -> Outcome:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self._outbox = Outbox(Spool(self.paths.root), self._send_entry,
                              delays=Backoff(base=0.2, cap=2.0, minimum=0.05))
        sender = self._sender = Sender(f"send-{self.a.run_id}")
        heart = threading.Thread(target=self._heartbeats, daemon=True,
                                 name=f"heartbeat-{self.a.run_id}")
        heart.start()
        try:
            ready = launch.prepare(
                self.a, self.paths, self.settings, server=self.api.server, gpus=self.gpus,
                resume_env=self._resume, warn=self._warn)
            if ready.launch is None:
                return self._report("fail", reason=models.Reason.SETUP_ERROR.value,
                                    details={"error": ready.setup_error})
            self.cwd = ready.cwd
            with self._lock:
                if self._shutdown:
                    return self._report("fail", reason=models.Reason.WORKER_SHUTDOWN.value,
                                        details={"error": "agent stopping before launch"})
                self.proc = process.start(ready.launch, self._logs.add)
            if self.proc.pid is not None:
                orphans.record(self.paths.root, self.proc.pid)
            self._beat()  # marks the run running at once
            if self.proc.pid is not None:
                self._sys = sysmetrics.Recorder(self.proc.pid, origin=self._run_origin(),
                                                interval_s=self.settings.sys_interval_s,
                                                gpus=self.gpus)
                self._sys.poll()  # primes the sampler: CPU percent is measured from here
            self._queue("placement", {"workdir": str(self.cwd)})  # where it executes
            live = threading.Thread(
                target=self._uploads.follow, daemon=True, name=f"checkpoints-{self.a.run_id}",
                args=(self._exited, self.probe_interval_s,
                      lambda: self._lease_lost or self._forced))
            live.start()
            try:
                result = self._supervise(self.proc)
                self._exited_at = time.monotonic()
            finally:
                if self.proc.result is not None:
                    orphans.forget(self.paths.root)
                self._exited.set()
                self._request.close()
            live.join()  # what it uploads now is not uploaded again below
            if self._lease_lost:
                return self._abandon()
            # What the process left unread goes a chunk a read, as while it ran (the server
            # stores one batch while the next is parsed); then the final read.
            while self._forward() and not self._lease_lost:
                pass
            self._forward(final=True)
            if self._lease_lost:
                return self._abandon()
            self._flush_outbox()
            if result.setup_error is None and not self._forced:
                try:
                    self._uploads.artifacts()
                    self._uploads.checkpoints()
                except errors.TransportError:  # only raised once a forced stop gave up
                    log.warning("run %s: uploads abandoned by a forced stop", self.a.run_id)
            return self._report_result(result)
        except LeaseLost:
            return self._abandon()
        finally:
            trainer_status.remove_token_file(self.paths.trainer_token_file)
            if self._sys is not None:
                self._sys.close()
            sender.close()
            self._done.set()
            self._exited.set()
            heart.join(timeout=self.hb_interval_s + 15)
            self._request.close()

    def _resume(self) -> dict[str, str]:
        """``RUNYARD_RESUME_FROM``/``_STEP`` for attempt 2 and later: the checkpoint an
        earlier attempt left (docs/lifecycle.md). One that cannot be had is a warning event
        and a start from scratch, never a failed attempt."""
        if self.a.number < 2:
            return {}
        a = self.a
        try:
            found = self.api.call(lambda: resume.fetch(self.api, a.attempt_id, a.lease,
                                                       self.paths.root / "resume"), attempts=3)
        except errors.LeaseConflict as exc:
            self._lose_lease("resume", exc)
            raise LeaseLost() from exc
        except (errors.RunyardError, OSError) as exc:
            why = getattr(exc, "message", None) or str(exc)
            log.warning("run %s: no checkpoint to resume from: %s", a.run_id, why)
            self._warn(f"attempt {a.number} starts from scratch: its resume checkpoint could "
                       f"not be fetched ({why[:500]})")
            return {}
        if found is None:
            return {}
        log.info("run %s attempt %d resumes from %s (step %d of attempt %d)", a.run_id,
                 a.number, found.path, found.step, found.attempt)
        return found.env()

    def _warn(self, message: str) -> None:
        """A warning event on the run (sent in order with its progress)."""
        self._queue("progress", {"snapshot": None, "warnings": [message]})

    def _run_origin(self) -> float:
        """When the run was created: system metric steps count seconds from it."""
        try:
            return timestamps.parse_time(self.a.run.get("created_at"), "created_at") \
                or self.a.claimed_at
        except errors.ValidationError:
            return self.a.claimed_at

    def _supervise(self, proc: process.ManagedProcess) -> process.ExitResult:
        """Wait for the exit, forwarding progress, metrics and logs every probe interval.

        It sleeps on an event and polls the process once a step instead of using
        ``proc.wait``, whose waitpid loop wakes up dozens of times a second: the agent's own
        CPU cost matters on small hosts (the stop deadline has its own timer in ``process``).
        """
        next_probe = time.monotonic() + self.probe_interval_s
        while True:
            result = proc.poll()
            if result is not None:
                return result
            self._request.probe()  # the loop registered a checkpoint: its request is answered
            now = time.monotonic()
            if self._sys is not None and not self._lease_lost:
                rows = self._sys.poll()
                if rows:  # sys/ tags travel as any metric row (docs/metrics-and-artifacts.md)
                    self._queue("metrics", {"rows": [list(r) for r in rows]})
            if not self._lease_lost and now >= next_probe:
                next_probe = now + self.probe_interval_s
                try:
                    if self._forward():
                        next_probe = now  # a backlog: drain it now, not a tick per chunk
                except LeaseLost:
                    pass  # the lease-lost stop is on its way; forward nothing more
            self._wake.wait(max(min(next_probe - time.monotonic(), LOOP_STEP_S), 0.0))
            self._wake.clear()

    # --- forwarding -------------------------------------------------------------------------

    def _send_entry(self, entry: Mapping[str, Any]) -> None:
        """Deliver one outbox message, ``{"kind", "body"}``."""
        kind, body = entry.get("kind"), entry.get("body")
        if not isinstance(kind, str) or not isinstance(body, Mapping):
            raise errors.ValidationError("spool: an unreadable message", field="kind")
        self._send(kind, body)

    def _send(self, kind: str, body: Mapping[str, Any]) -> None:
        a = self.a
        if kind == "progress":
            self.api.progress(a.attempt_id, a.lease, body.get("snapshot"),
                              body.get("warnings") or [])
        elif kind == "metrics":
            self.api.metrics(a.run_id, a.attempt_id, a.lease, points=body.get("points") or (),
                             rows=body.get("rows") or ())
        elif kind == "logs":
            self.api.logs(a.attempt_id, a.lease, body["chunks"])
        elif kind == "placement":
            self.api.placement(a.attempt_id, a.lease, workdir=body.get("workdir"))
        else:
            raise errors.ValidationError(f"kind: unknown outbox message {kind!r}", field="kind")

    def _post(self, kind: str, body: Mapping[str, Any]) -> None:
        """Send (or spool) one message; on the sender's thread. Nothing once the lease is
        lost: another worker owns the run."""
        assert self._outbox is not None
        if self._lease_lost:
            return
        try:
            self._outbox.post({"kind": kind, "body": body})
        except errors.LeaseConflict as exc:
            self._lose_lease(kind, exc)
            raise LeaseLost() from exc

    def _replay_spool(self) -> None:
        """Replay what the server could not take, when its retry time has come."""
        assert self._outbox is not None
        if self._lease_lost:
            return
        try:
            self._outbox.flush()
        except errors.LeaseConflict as exc:
            self._lose_lease("spool replay", exc)
            raise LeaseLost() from exc

    def _queue(self, kind: str, body: Mapping[str, Any]) -> None:
        assert self._sender is not None
        self._sender.submit(lambda: self._post(kind, body))

    def _forward(self, final: bool = False) -> bool:
        """Probe the files and the output once; queue what changed for the sender, which
        sends (or spools) it in this order while the next read goes on. The final read
        returns once all of it went. True when the metrics stream still has a backlog."""
        assert self._sender is not None
        found = self._probe.read(final=final)
        # Metrics before the snapshot that mentions them, so a reader never sees a snapshot
        # whose step is ahead of the stored series.
        for rows in found.metric_batches:
            self._queue("metrics", {"rows": rows})
        if found.progress is not None:
            self._queue("progress", found.progress)
        chunks = self._logs.drain(final=final)
        batch_chunks: list[dict[str, Any]] = []
        size = 0
        for chunk in chunks:
            if batch_chunks and size + len(chunk["data"]) > 1024 * 1024:
                self._queue("logs", {"chunks": batch_chunks})
                batch_chunks, size = [], 0
            batch_chunks.append(chunk)
            size += len(chunk["data"])
        if batch_chunks:
            self._queue("logs", {"chunks": batch_chunks})
        if final:
            self._sender.wait()
        else:
            self._sender.submit(self._replay_spool)
        return found.more

    def _flush_outbox(self) -> None:
        """After the exit: wait for the server until the spool is empty (heartbeats go on)."""
        assert self._outbox is not None
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                if self._outbox.flush(force=True):
                    return
            except errors.LeaseConflict as exc:
                self._lose_lease("spool replay", exc)
                raise LeaseLost() from exc
            if self._forced:
                log.warning("forced stop: %s keeps what was not sent", self._outbox.spool.path)
                return
            time.sleep(backoff.next_delay())

    # --- heartbeats -------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        while not self._done.wait(self.hb_interval_s):
            if self._lease_lost:
                return
            self._beat()

    def _beat(self) -> None:
        try:
            answer = self.api.heartbeat(self.a.attempt_id, self.a.lease, running=True)
        except errors.LeaseConflict as exc:
            self._lose_lease("heartbeat", exc)
            return
        except errors.RunyardError as exc:
            log.warning("run %s: heartbeat failed (%s); retrying", self.a.run_id, exc.message)
            return
        asked = answer.get("checkpoint_requested_at")
        self._request.heartbeat(asked if answer.get("checkpoint") and isinstance(asked, str)
                                else None)
        if answer.get("stop"):
            grace = answer.get("grace_s")
            grace_s = float(grace) if isinstance(grace, int | float) else \
                self.settings.stop_grace_s
            intent = answer.get("intent")
            with self._lock:
                first = self._stop_ordered is None
                self._stop_ordered = (intent if isinstance(intent, str) else None, grace_s)
                proc = self.proc
            if first:
                log.info("run %s: the server asks to stop (%s) within %.3g s",
                         self.a.run_id, intent or "stop", grace_s)
            if proc is not None:
                proc.request_stop(grace_s)

    # --- uploads ----------------------------------------------------------------------------

    def _deliver(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` until the server takes it; 409 abandons, forced stop gives up."""
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                return fn()
            except errors.LeaseConflict as exc:
                self._lose_lease(what, exc)
                raise LeaseLost() from exc
            except errors.TransportError as exc:
                if self._forced:
                    raise
                delay = backoff.next_delay()
                log.warning("run %s: %s failed (%s); retrying in %.1f s", self.a.run_id, what,
                            exc.message, delay)
                time.sleep(delay)

    # --- the report -------------------------------------------------------------------------

    def _report_result(self, result: process.ExitResult) -> Outcome:
        with self._lock:
            ordered = self._stop_ordered
        signal_at = self.settings.signalled_at() if self.settings.signalled_at else None
        v = verdict.judge(result, host_id=self.settings.host_id, cwd=self.cwd,
                          shutdown=self._shutdown, stop_ordered=ordered is not None,
                          intent=ordered[0] if ordered else None,
                          report_on_shutdown=self.settings.report_on_shutdown,
                          signalled=verdict.signalled_before(signal_at, self._exited_at))
        if v.verb == "leave":
            log.warning("run %s: %s; the attempt is left for the executor to report",
                        self.a.run_id, "stopped from outside" if self._shutdown
                        else result.message)
            self.reason = "left unreported"
            self.left = {"why": v.left_why, "exit_code": v.exit_code,
                         "stderr_tail": v.stderr_tail, "details": v.details}
            return Outcome.UNREPORTED
        return self._report(v.verb, reason=v.reason, exit_code=v.exit_code,
                            stderr_tail=v.stderr_tail, details=v.details)

    def _report(self, verb: str, *, reason: str | None = None, exit_code: int | None = None,
                stderr_tail: Sequence[str] = (),
                details: Mapping[str, Any] | None = None) -> Outcome:
        a = self.a
        self.reason = reason or "completed"
        try:
            if verb == "complete":
                self._deliver("complete", lambda: self.api.complete(
                    a.attempt_id, a.lease, exit_code=exit_code or 0, details=details))
                return Outcome.COMPLETED
            self._deliver(f"fail ({reason})", lambda: self.api.fail(
                a.attempt_id, a.lease, str(reason), exit_code=exit_code,
                stderr_tail=list(stderr_tail), details=details))
            return Outcome.FAILED
        except errors.TransportError:  # a forced stop while the server is away
            log.error("run %s: %s not reported (forced stop, server unreachable)",
                      a.run_id, verb)
            return Outcome.UNREPORTED

    def _report_safely(self, verb: str, **kwargs: Any) -> Outcome:
        try:
            return self._report(verb, **kwargs)
        except LeaseLost:
            return Outcome.ABANDONED
        except errors.RunyardError as exc:
            log.error("run %s: could not report: %s", self.a.run_id, exc.message)
            return Outcome.UNREPORTED

    def _abandon(self) -> Outcome:
        if self.proc is not None and self.proc.result is None:
            self.proc.request_stop(LEASE_LOST_GRACE_S)
            self.proc.wait()
        self.reason = "lease lost"
        log.warning("run %s attempt %d abandoned: another worker owns the run now",
                    self.a.run_id, self.a.number)
        return Outcome.ABANDONED
