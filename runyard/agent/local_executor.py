"""The local executor: each claimed attempt is a process on this host, supervised by an
:class:`~runyard.agent.attempt.AttemptRunner` on a thread of its own (docs/executors.md).

GPUs: each attempt gets its own via ``CUDA_VISIBLE_DEVICES``. A claim advertises only the
GPUs no attempt holds, so the server never hands this host a run needing more GPUs than are
free (and sends ``prefer_cuda`` runs elsewhere while all of them are busy).

A training process outlives an agent killed outright (it has its own session); the next
agent started on the same work directory stops it first (:mod:`runyard.agent.orphans`), so
:meth:`LocalExecutor.reattach` finds nothing to take over.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runyard import models
from runyard.agent import attempt as attempt_mod
from runyard.agent import capabilities, isolation, orphans
from runyard.agent.assignment import Assignment, AttemptSettings
from runyard.agent.executor import RUNNING, Executor, Handle, Poll, register

if TYPE_CHECKING:
    from runyard.agent.api import WorkerAPI
    from runyard.agent.config import AgentConfig

log = logging.getLogger(__name__)


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


@dataclasses.dataclass
class LocalHandle(Handle):
    """A local attempt: its runner, the thread running it, the GPUs it holds."""

    runner: attempt_mod.AttemptRunner | None = None
    thread: threading.Thread | None = None
    gpus: list[int] = dataclasses.field(default_factory=list)


@register
class LocalExecutor(Executor):
    """Processes on this host, one :class:`AttemptRunner` thread each, up to ``slots``."""

    name = "local"
    detach_on_exit = False

    def __init__(self, config: AgentConfig, api: WorkerAPI) -> None:
        super().__init__(config, api)
        # The git commit reported is the checkout the agent runs in, as ``--check`` shows it.
        self.caps = capabilities.detect(host_id=config.host_id, labels=config.labels,
                                        slots=config.slots, workdir=os.getcwd())
        self.gpus = GpuPool(self.caps.gpus)
        self.settings = AttemptSettings(
            host_id=self.caps.host_id, work_dir=config.work_dir.resolve(),
            probe_interval_s=config.probe_interval_s, stop_grace_s=config.stop_grace_s,
            run_cwd=Path.cwd(), sys_interval_s=config.sys_interval_s,
            train_user=isolation.TrainUser.resolve(config.train_as) if config.train_as
            else None)

    @property
    def host_id(self) -> str:
        return self.caps.host_id

    def capabilities(self) -> dict[str, Any]:
        caps = dataclasses.replace(self.caps, gpus=self.gpus.free())
        data = caps.to_dict()
        data["gpus_total"] = len(self.caps.gpus)
        data["executor"] = self.name
        return data

    def max_in_flight(self) -> int:
        return self.config.slots

    def describe(self) -> str:
        fake = "/".join(w for w in ("gpus", "ram") if self.caps.extra.get(f"fake_{w}"))
        note = f" (FAKE {fake}, for tests)" if fake else ""
        return (f"{self.config.slots} slot(s), {len(self.caps.gpus)} GPU(s){note}, "
                f"work dir {self.settings.work_dir}")

    def check_text(self) -> str:
        """The self-test of ``runyard agent --check``."""
        return capabilities.format_check(self.caps)

    def reattach(self) -> list[Handle]:
        # What a dead predecessor on this work dir left running trains for nobody now (its
        # attempts end as lost), so stop it; a local process cannot be taken over.
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        orphans.reap(self.settings.work_dir)
        return []

    def start(self, assignment: Assignment) -> LocalHandle:
        gpus = self.gpus.take(assignment.constraints)
        runner = attempt_mod.AttemptRunner(assignment, self.api, self.settings, gpus)
        thread = threading.Thread(target=runner.run, daemon=True,
                                  name=f"attempt-{assignment.run_id}-{assignment.number}")
        handle = LocalHandle(run_id=assignment.run_id, attempt_id=assignment.attempt_id,
                             number=assignment.number, runner=runner, thread=thread, gpus=gpus)
        if gpus:
            log.info("run %s attempt %d gets GPUs %s", assignment.run_id, assignment.number,
                     gpus)
        thread.start()
        return handle

    def poll(self, handle: Handle) -> Poll:
        assert isinstance(handle, LocalHandle) and handle.runner is not None
        runner, thread = handle.runner, handle.thread
        if not runner.finished or (thread is not None and thread.is_alive()):
            return RUNNING
        if handle.gpus:
            self.gpus.give_back(handle.gpus)
            handle.gpus = []
        return Poll(finished=True, outcome=str(runner.outcome) if runner.outcome else None,
                    reason=runner.reason)

    def signal(self, handle: Handle, *, grace_s: float, force: bool = False) -> None:
        assert isinstance(handle, LocalHandle) and handle.runner is not None
        # The runner's shutdown gives the process the agent's stop grace and reports the
        # attempt as worker_shutdown, so it requeues.
        handle.runner.shutdown(force=force)

    def join(self, handle: Handle, timeout: float) -> None:
        """Wait up to ``timeout`` s for a handle's thread (a forced exit's last reports)."""
        if isinstance(handle, LocalHandle) and handle.thread is not None:
            handle.thread.join(timeout=timeout)
