"""The Slurm executor: each claimed attempt becomes one ``sbatch`` job (docs/executors.md).

The agent runs on a login node as the submitting user. For each claim it writes the attempt's
directory on the shared work directory (the claim, the attempt's own credential in a
mode-0600 file), submits a job whose script runs ``runyard supervise`` for that attempt
(:mod:`~runyard.agent.slurm.script`), and from then on only reconciles:

* while the job waits in Slurm's queue, the agent heartbeats the attempt (nothing else
  does yet) and carries out a stop ordered meanwhile (``scancel``);
* once the job runs, the supervisor inside it heartbeats and reports, with the same code as a
  local agent; the agent reports the attempt's placement (job id, nodes);
* when the job has ended and the supervisor did not report (Slurm killed it, the node died,
  someone ran ``scancel``, it vanished), the agent reports it with the reason its Slurm state
  means (:mod:`~runyard.agent.slurm.states`). A report the supervisor already made makes
  the server answer 409, which the agent takes as "already told".

One ``squeue`` call a reconcile covers every job; ``scontrol``, then ``sacct``, are asked
only about jobs ``squeue`` no longer lists. Jobs outlive the agent: at exit it leaves them,
and the next agent on the same work directory takes them over (:mod:`~runyard.agent.slurm.jobs`).
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import socket
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runyard import errors, models
from runyard.agent import capabilities as host_caps
from runyard.agent.assignment import Assignment, heartbeat_interval
from runyard.agent.executor import RUNNING, Executor, Handle, Poll, register
from runyard.agent.slurm import commands, launch, partitions, resources, script, states, supervision
from runyard.agent.slurm.jobs import JobBook, JobRecord
from runyard.slurm_options import SlurmOptions

if TYPE_CHECKING:
    from runyard.agent.api import WorkerAPI
    from runyard.agent.config import AgentConfig

log = logging.getLogger(__name__)

#: Seconds between two reconciles (one ``squeue`` each).
RECONCILE_S = 2.0
#: Seconds between two ``sinfo`` reads for the capabilities.
SINFO_REFRESH_S = 30.0
#: Most jobs in flight unless ``--max-jobs`` says otherwise.
DEFAULT_MAX_JOBS = 100
#: Lines of the job's output file put into a report the agent makes.
TAIL_LINES = 20
#: Pending jobs' heartbeats: how many at once, and the longest pause between two of one job.
BEAT_THREADS = 4
PENDING_BEAT_MAX_S = 15.0


def pending_beat_interval(stale_after_s: float) -> float:
    """Seconds between heartbeats of a job waiting in Slurm's queue: a quarter of the lease,
    at most :data:`PENDING_BEAT_MAX_S` (a stop of a waiting job is an ``scancel`` within
    that), never below a running attempt's pace."""
    if stale_after_s <= 0:
        return heartbeat_interval(stale_after_s)
    return max(min(stale_after_s / 4.0, PENDING_BEAT_MAX_S), heartbeat_interval(stale_after_s))


@dataclasses.dataclass
class SlurmHandle(Handle):
    """An attempt's job: its record, what Slurm last said, what was reported."""

    record: JobRecord | None = None
    job_state: str = "PENDING"
    nodes: tuple[str, ...] = ()
    placed: str = ""  # the placement last reported ("job:nodes")
    next_beat: float = 0.0
    beat: Future[dict[str, Any]] | None = None  # a pending job's heartbeat under way
    cancel_at: float | None = None  # monotonic: scancel for good then (after a stop's grace)
    finished: bool = False
    outcome: str | None = None
    reason: str | None = None


@register
class SlurmExecutor(Executor):
    """Batch jobs on a Slurm cluster, up to ``--max-jobs`` at once."""

    name = "slurm"
    detach_on_exit = True

    def __init__(self, config: AgentConfig, api: WorkerAPI) -> None:
        super().__init__(config, api)
        self.cli = commands.SlurmCLI()
        self.work_dir = config.work_dir.resolve()
        self.book = JobBook(self.work_dir)
        self.handles: dict[str, SlurmHandle] = {}
        self.hostname = socket.gethostname()
        self._host_id = config.host_id or f"{host_caps.default_host_id(self.hostname)}-slurm"
        models.validate_host_id(self._host_id, "host_id")
        self.partition: str | None = config.slurm_partition
        self.account: str | None = config.slurm_account
        self.max_jobs: int = config.max_jobs or DEFAULT_MAX_JOBS
        self.offers: list[partitions.Offer] = []
        self.problem: str | None = None
        self._sinfo_at = 0.0
        self._reconciled_at = 0.0
        self._pool = ThreadPoolExecutor(BEAT_THREADS, thread_name_prefix="slurm-beat")
        self._refresh(force=True)

    # --- what this agent offers -------------------------------------------------------------

    @property
    def host_id(self) -> str:
        return self._host_id

    def _refresh(self, force: bool = False) -> None:
        """Read ``sinfo`` (at most every :data:`SINFO_REFRESH_S`); a failure is kept in
        :attr:`problem`, said once, and the last offers stay."""
        now = time.monotonic()
        if not force and now - self._sinfo_at < SINFO_REFRESH_S:
            return
        self._sinfo_at = now
        missing = self.cli.missing()
        try:
            if missing:
                raise errors.SchedulerError(f"Slurm commands not found on PATH: "
                                            f"{', '.join(missing)}")
            if self.partition is None:
                self.partition = self.cli.default_partition()
            self.offers = partitions.offers(self.cli.sinfo())
            if self.partition is None and self.offers:
                self.partition = self.offers[0].partition
            if partitions.pick(self.offers, self.partition) is None:
                names = ", ".join(o.partition for o in self.offers) or "none"
                raise errors.SchedulerError(f"partition {self.partition!r} not found by sinfo "
                                            f"(partitions: {names})")
            if self.problem:
                log.warning("Slurm answers again: %s", self.describe())
            self.problem = None
        except errors.SchedulerError as exc:
            if exc.message != self.problem:
                log.error("Slurm is not usable: %s (claiming nothing; jobs already submitted "
                          "are still followed)", exc.message)
            self.problem = exc.message

    def offer(self) -> partitions.Offer | None:
        return partitions.pick(self.offers, self.partition) if self.offers else None

    def capabilities(self) -> dict[str, Any]:
        self._refresh()
        o = self.offer()
        caps = models.Capabilities(
            host_id=self._host_id, hostname=self.hostname, os=platform.system().lower(),
            arch=platform.machine(), cpus=float(o.cpus) if o else 0.0,
            ram_gib=o.ram_gib if o else 0.0,
            gpus=tuple(models.GPU(index=int(str(g["index"])), name=str(g["name"]))
                       for g in (partitions.gpu_entries(o) if o else [])),
            python=platform.python_version(), labels=dict(self.config.labels),
            slots=self.max_jobs, executor=self.name, nodes=max(o.nodes if o else 1, 1))
        data = caps.to_dict()
        data["gpus_total"] = len(caps.gpus)
        data["executor"] = self.name
        data["slurm"] = {"partition": self.partition, "account": self.account,
                         "partitions": [x.to_dict() for x in self.offers],
                         "jobs": len(self.handles), "problem": self.problem}
        return data

    def max_in_flight(self) -> int:
        # While Slurm does not answer, claim nothing: a claimed run would only fail in sbatch.
        if self.problem is not None:
            return len(self.handles)
        return self.max_jobs

    def describe(self) -> str:
        o = self.offer()
        what = (f"partition {self.partition}: {o.nodes} node(s) of {o.cpus} CPU(s), "
                f"{o.ram_gib:g} GiB, {o.gpus} GPU(s)") if o else "no partition"
        return (f"Slurm {what}, up to {self.max_jobs} job(s), work dir {self.work_dir}"
                + (f"; NOT USABLE: {self.problem}" if self.problem else ""))

    def check_text(self) -> str:
        """``runyard agent --check --executor slurm``: the partitions and what a run may ask."""
        lines = [f"executor:   slurm (host id {self._host_id}, submitting as {self.cli.user})"]
        if self.problem:
            lines.append(f"PROBLEM:    {self.problem}")
        if self.offers:
            lines.append("partitions (* = the one this agent serves):")
            lines.append(partitions.format_table(self.offers, self.partition))
        o = self.offer()
        if o:
            lines.append(f"a run may ask for: nodes <= {o.nodes}, min_cpus <= {o.cpus}, "
                         f"min_ram_gib <= {o.ram_gib:g}, gpus <= {o.gpus} (per node)")
        lines.append(f"work dir:   {self.work_dir} (must be on a file system the compute "
                     "nodes share)")
        return "\n".join(lines)

    # --- starting ---------------------------------------------------------------------------

    def start(self, assignment: Assignment) -> SlurmHandle:
        a = assignment
        root = self.work_dir / a.run_id / str(a.number)
        rec = JobRecord(attempt_id=a.attempt_id, run_id=a.run_id, number=a.number,
                        lease=a.lease, root=str(root), stale_after_s=a.stale_after_s)
        handle = SlurmHandle(run_id=a.run_id, attempt_id=a.attempt_id, number=a.number,
                             record=rec)
        self.handles[a.attempt_id] = handle
        self.book.save(rec)  # before sbatch: a restart in between finds the job by name
        try:
            c = a.constraints
            opts = SlurmOptions.from_dict(a.run.get("slurm") or None)
            nodes = resources.nodes_of(c)
            launcher = str(a.run.get("launcher") or "srun")
            prefix = launch.launch_prefix(launcher, nodes=nodes,
                                          gpus_per_node=resources.gpus_per_node(c),
                                          python=python_executable())
            grace = self.grace_of(a)
            argv = supervision.prepare(a, root, server=self.api.server, work_dir=self.work_dir,
                                       probe_interval_s=self.config.probe_interval_s,
                                       stop_grace_s=grace, launch_prefix=prefix,
                                       python=python_executable())
            args = resources.sbatch_args(
                c, opts, attempt_id=a.attempt_id, run_id=a.run_id, number=a.number,
                output=str(root / "slurm-%j.out"), chdir=str(root), grace_s=grace,
                default_partition=self.partition, default_account=self.account)
            rec.warned = any(x.startswith("--signal=") for x in args)
            master = ([python_executable(), "-m", "runyard.agent.slurm.launch", "env"]
                      if nodes > 1 or launcher == "torchrun" else [])
            text = script.render(argv, run_id=a.run_id, number=a.number, cwd=Path.cwd(),
                                 master_env=master)
            job_id = self.cli.sbatch(args, text)
        except (errors.SchedulerError, errors.ValidationError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            log.error("run %s attempt %d: not submitted: %s", a.run_id, a.number, message)
            self._report(handle, models.Reason.SETUP_ERROR, f"sbatch refused the job: {message}",
                         extra={"error": message})
            return handle
        rec.job_id = handle.external_id = job_id
        self.book.save(rec)
        handle.next_beat = time.monotonic() + pending_beat_interval(rec.stale_after_s)
        log.info("run %s attempt %d: Slurm job %s (%s)", a.run_id, a.number, job_id,
                 resources.describe(args))
        self._place(handle)
        return handle

    def grace_of(self, a: Assignment) -> float:
        grace = a.run.get("stop_grace_s")
        return float(grace) if isinstance(grace, int | float) else self.config.stop_grace_s

    # --- following --------------------------------------------------------------------------

    def poll(self, handle: Handle) -> Poll:
        assert isinstance(handle, SlurmHandle)
        if not handle.finished:
            return RUNNING
        self.handles.pop(handle.attempt_id, None)
        return Poll(finished=True, outcome=handle.outcome, reason=handle.reason)

    def tick(self) -> None:
        self._beats_done()
        now = time.monotonic()
        if now - self._reconciled_at < RECONCILE_S:
            return
        self._reconciled_at = now
        self._refresh()
        live = [h for h in self.handles.values() if not h.finished and h.external_id]
        if not live:
            return
        try:
            seen = {j.job_id: j for j in self.cli.squeue(job_ids=[h.external_id or ""
                                                                   for h in live])}
        except errors.SchedulerError as exc:
            log.warning("squeue failed (%s); jobs are checked again in %.0f s", exc.message,
                        RECONCILE_S)
            return
        for h in live:
            job = seen.get(h.external_id or "")
            if job is None:
                job = self._look_harder(h)
            self._follow(h, job.state if job else None, job.nodes if job else ())

    def _look_harder(self, h: SlurmHandle) -> Any:
        """A job squeue no longer lists: scontrol, then accounting, else None (vanished)."""
        try:
            job = self.cli.show_job(h.external_id or "")
            if job is not None:
                return job
            found = self.cli.sacct([h.external_id or ""])
        except errors.SchedulerError:
            return _Unknown()
        return next(iter(found or []), None)

    def _follow(self, h: SlurmHandle, state: str | None, nodes: tuple[str, ...]) -> None:
        if state == _Unknown.state:
            return
        v = states.verdict(state)
        if nodes:
            h.nodes = nodes
        h.job_state = states.normalize(state) if state else "VANISHED"
        if v.active:
            if h.job_state == "PENDING":
                self._beat(h)
            elif h.nodes:
                self._place(h)
            if h.cancel_at is not None and time.monotonic() >= h.cancel_at:
                self._cancel(h)
            return
        if h.nodes:
            self._place(h)
        assert v.reason is not None
        reason, message = v.reason, v.message
        left: dict[str, Any] | None = None
        rec = h.record
        mark = supervision.left_mark(Path(rec.root)) if rec is not None and \
            h.job_state in ("COMPLETED", "FAILED") else None
        if mark is not None and mark.get("why") == "signal":
            # The supervisor stopped the run on a SIGTERM that did not end the job: Slurm's
            # time-limit warning (--signal=B:TERM), or a signal from outside Runyard.
            if rec is not None and rec.warned:
                reason, message = (models.Reason.TIMEOUT, "stopped at the warning before its "
                                   "Slurm time limit")
            else:
                reason, message = (models.Reason.STOPPED, "its supervisor was stopped by a "
                                   "signal from outside Runyard")
        elif mark is not None:
            # A signal killed the training process and Slurm's state does not say why (no
            # cancel, time limit or out-of-memory kill): the run's own doing, as a local
            # agent would report it.
            reason, message = models.Reason.USER_ERROR, "the training process was killed"
            left = mark
        self._report(h, reason, f"Slurm job {h.external_id} {h.job_state}: {message}",
                     left=left)

    def _beat(self, h: SlurmHandle) -> None:
        """A pending job's heartbeat (no supervisor is there yet to send one): sent from a
        small pool, so hundreds of waiting jobs never hold up reconciles and claims; its
        answer is acted on by :meth:`_beats_done` on the agent's thread."""
        rec = h.record
        if rec is None or h.beat is not None or time.monotonic() < h.next_beat:
            return
        h.next_beat = time.monotonic() + pending_beat_interval(rec.stale_after_s)
        lease = rec.lease
        h.beat = self._pool.submit(self.api.heartbeat, h.attempt_id, lease, running=False)

    def _beats_done(self) -> None:
        """Act on the answers of pending jobs' heartbeats that came back."""
        for h in list(self.handles.values()):
            fut = h.beat
            if fut is None or not fut.done():
                continue
            h.beat = None
            if h.finished:
                continue
            try:
                answer = fut.result()
            except errors.LeaseConflict:
                # The server ended the attempt (it lapsed, or an operator acted): drop the job.
                log.warning("run %s attempt %d: the server no longer holds this attempt; "
                            "cancelling Slurm job %s", h.run_id, h.number, h.external_id)
                self._cancel(h)
                self._finish(h, "abandoned", "lease lost")
                continue
            except errors.RunyardError as exc:
                log.warning("run %s: heartbeat failed (%s)", h.run_id, exc.message)
                h.next_beat = time.monotonic()  # again at the next reconcile
                continue
            if answer.get("stop") and h.job_state == "PENDING":
                log.info("run %s: stop ordered while Slurm job %s waits: cancelling it",
                         h.run_id, h.external_id)
                self._cancel(h)
                self._report(h, models.Reason.STOPPED, f"Slurm job {h.external_id} cancelled "
                             "before it started (stop requested)")

    def _place(self, h: SlurmHandle) -> None:
        """Tell the server where the attempt runs (job id and nodes), once per change."""
        key = f"{h.external_id}:{','.join(h.nodes)}"
        if h.placed == key or h.record is None:
            return
        if supervision.report_placement(self.api, h.attempt_id, h.record.lease,
                                        h.external_id or "", list(h.nodes)):
            h.placed = key

    def _report(self, h: SlurmHandle, reason: models.Reason, message: str,
                extra: dict[str, Any] | None = None,
                left: dict[str, Any] | None = None) -> None:
        """Report an attempt the supervisor did not (409: it did, or the server ended it).
        ``left``: the exit code and stderr tail the supervisor left for this report."""
        rec = h.record
        details: dict[str, Any] = {"host": self._host_id, "message": message,
                                   "slurm_job": h.external_id, "slurm_state": h.job_state,
                                   "nodes": list(h.nodes), **(extra or {})}
        left = left or {}
        tail = left.get("stderr_tail")
        if not isinstance(tail, list):
            tail = supervision.output_tail(Path(rec.root) if rec else None, h.external_id,
                                           TAIL_LINES)
        code = left.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        outcome = "failed"
        if rec is not None:
            try:
                self.api.call(lambda: self.api.fail(
                    h.attempt_id, rec.lease, reason.value, exit_code=exit_code,
                    stderr_tail=[*(str(x)[:2000] for x in tail), message][-40:],
                    details=details))
                log.info("run %s attempt %d: reported %s (%s)", h.run_id, h.number,
                         reason.value, message)
            except errors.LeaseConflict:
                outcome = "reported"  # by the supervisor, or ended by the server
            except errors.RunyardError as exc:
                log.error("run %s attempt %d: could not report %s: %s", h.run_id, h.number,
                          reason.value, exc.message)
                return  # try again on the next reconcile
        self._finish(h, outcome, reason.value)

    def _finish(self, h: SlurmHandle, outcome: str, reason: str) -> None:
        h.finished, h.outcome, h.reason = True, outcome, reason
        self.book.forget(h.attempt_id)

    # --- stopping ---------------------------------------------------------------------------

    def signal(self, handle: Handle, *, grace_s: float, force: bool = False) -> None:
        """``scancel --signal=TERM --full`` (the supervisor and every step get SIGTERM: the
        training process stops within its grace), then ``scancel`` once ``grace_s`` passed."""
        assert isinstance(handle, SlurmHandle)
        if not handle.external_id or handle.finished:
            return
        if force:
            self._cancel(handle)
            return
        try:
            self.cli.scancel(handle.external_id, signal="TERM", full=True)
        except errors.SchedulerError as exc:
            log.warning("scancel --signal=TERM %s: %s", handle.external_id, exc.message)
        handle.cancel_at = time.monotonic() + grace_s

    def _cancel(self, h: SlurmHandle) -> None:
        if not h.external_id:
            return
        try:
            self.cli.scancel(h.external_id)
        except errors.SchedulerError as exc:
            log.warning("scancel %s: %s", h.external_id, exc.message)
        h.cancel_at = None

    def close(self) -> None:
        """Heartbeats under way finish; none starts (the jobs themselves stay)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    # --- after a restart --------------------------------------------------------------------

    def reattach(self) -> list[Handle]:
        """The jobs a previous agent on this work directory submitted, taken over; a record
        whose sbatch never ran is reported lost (its attempt requeues), never submitted."""
        records = self.book.all()
        if not records:
            return []
        names = [resources.job_name(r.attempt_id) for r in records]
        try:
            by_name = {j.name: j for j in self.cli.squeue(names=names)}
        except errors.SchedulerError as exc:
            log.error("reattach: squeue failed (%s); following the recorded job ids", exc.message)
            by_name = {}
        out: list[Handle] = []
        for rec in records:
            job = by_name.get(resources.job_name(rec.attempt_id))
            if rec.job_id is None and job is not None:
                rec.job_id = job.job_id
                self.book.save(rec)
            h = SlurmHandle(run_id=rec.run_id, attempt_id=rec.attempt_id, number=rec.number,
                            external_id=rec.job_id, record=rec)
            self.handles[rec.attempt_id] = h
            if rec.job_id is None:
                self._report(h, models.Reason.LOST, "the agent stopped before its job was "
                             "submitted")
            else:
                log.info("run %s attempt %d: following Slurm job %s again", rec.run_id,
                         rec.number, rec.job_id)
            out.append(h)
        return out


class _Unknown:
    """Slurm did not answer about a job: decide nothing this time."""

    state = "\0unknown"
    nodes: tuple[str, ...] = ()


def python_executable() -> str:
    """The interpreter the job runs ``runyard supervise`` with (this agent's: on a shared
    file system, as the work directory is)."""
    return sys.executable
