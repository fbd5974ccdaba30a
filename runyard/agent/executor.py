"""Where a claimed attempt executes: the executor interface of the agent (docs/executors.md).

An agent is one claim loop (:mod:`runyard.agent.daemon`) over one :class:`Executor`. The
loop claims while the executor has room, hands each claim to :meth:`Executor.start`, polls
the handles it got back until they are finished, and at exit stops or leaves them as the
executor says. What "start" means is the executor's: the local executor launches a process
on this host and supervises it from a thread (:mod:`runyard.agent.local_executor`); the
Slurm executor submits a batch job whose script runs ``runyard supervise`` inside the
allocation; a Kubernetes executor would create a Job. Whatever runs the training process
reports progress, metrics, logs and the outcome to the server itself (the local executor's
thread, or ``runyard supervise``), through the same code (:mod:`runyard.agent.attempt`).

Executors register by name (:func:`runyard.agent.registry.register`); ``runyard agent
--executor NAME`` picks one, and an unknown or unavailable name is refused at start with the
names that are available.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from runyard.agent.registry import _REGISTRY, available, check_name, lookup, register

if TYPE_CHECKING:
    from runyard.agent.api import WorkerAPI
    from runyard.agent.assignment import Assignment
    from runyard.agent.config import AgentConfig

log = logging.getLogger(__name__)


__all__ = ["RUNNING", "_REGISTRY", "Executor", "Handle", "Poll", "available", "check_name",
           "create", "lookup", "register"]


@dataclass
class Handle:
    """One attempt an executor started (or found again after a restart).

    ``external_id`` is the executor's own name for it (a Slurm job id; None for a local
    process); ``state`` holds whatever the executor keeps about it.
    """

    run_id: str
    attempt_id: str
    number: int
    external_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Poll:
    """What :meth:`Executor.poll` found: ``finished`` once the executor is done with the
    attempt (its slot is free again); ``outcome`` how it ended as far as the executor knows
    (``completed``, ``failed``, ``abandoned``, ``unreported``, ``lost``...); ``reason`` a
    short text for the agent's log."""

    finished: bool
    outcome: str | None = None
    reason: str | None = None


#: The answer of :meth:`Executor.poll` for an attempt still under way.
RUNNING = Poll(finished=False)


class Executor(abc.ABC):
    """The executor interface. The agent calls every method from its main thread.

    ``config`` is the agent's :class:`~runyard.agent.config.AgentConfig`, ``api`` its
    :class:`~runyard.agent.api.WorkerAPI` (the worker token: an executor that runs attempts
    elsewhere gives them the attempt's own credential instead, never this).
    """

    #: The ``--executor`` name; also the ``executor`` the claims advertise.
    name: ClassVar[str]
    #: At the agent's exit: True leaves started attempts running (a Slurm job outlives the
    #: agent and is found again by :meth:`reattach`); False stops them with their grace
    #: period (:meth:`signal`), so they end as ``worker_shutdown`` and requeue.
    detach_on_exit: ClassVar[bool] = False

    def __init__(self, config: AgentConfig, api: WorkerAPI) -> None:
        self.config = config
        self.api = api

    @property
    @abc.abstractmethod
    def host_id(self) -> str:
        """The worker's host id (the claims' ``host_id``)."""

    @abc.abstractmethod
    def capabilities(self) -> dict[str, Any]:
        """The claim's ``capabilities``, as of now (free GPUs, partitions...); must hold
        ``"executor": self.name``."""

    @abc.abstractmethod
    def max_in_flight(self) -> int:
        """Attempts this executor may hold at once (the agent's slots, ``--max-jobs``)."""

    def describe(self) -> str:
        """What ``runyard agent --check`` and the agent's start-up log print about it."""
        return f"executor {self.name}"

    def check_text(self) -> str:
        """The self-test ``runyard agent --check`` prints (what runs may ask for here)."""
        return self.describe()

    @abc.abstractmethod
    def start(self, assignment: Assignment) -> Handle:
        """Start a claimed attempt; returns at once. Must not raise for a bad run: a run
        that cannot start is reported failed (``setup_error``) by the executor itself."""

    @abc.abstractmethod
    def poll(self, handle: Handle) -> Poll:
        """Whether ``handle`` is finished (:data:`RUNNING` while it is not)."""

    @abc.abstractmethod
    def signal(self, handle: Handle, *, grace_s: float, force: bool = False) -> None:
        """Stop the attempt: the stop file and SIGTERM, SIGKILL after ``grace_s``; ``force``
        kills it at once. Used at the agent's exit (stops users ask for reach the attempt
        through its heartbeats, from whatever supervises it)."""

    def reattach(self) -> list[Handle]:
        """At start, before the first claim: the attempts a previous agent of this executor
        left running, found again (none for local processes, which are stopped instead)."""
        return []

    def join(self, handle: Handle, timeout: float) -> None:  # noqa: B027 - optional hook
        """After a forced stop: wait up to ``timeout`` s for the attempt's last reports."""

    def tick(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once a turn of the claim loop (a Slurm executor reconciles its jobs)."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """The agent is leaving: release what the executor holds (not the attempts)."""


#: Executors by name, and where to find the ones not imported yet.
def create(config: AgentConfig, api: WorkerAPI) -> Executor:
    """The executor the agent's config names."""
    cls = lookup(check_name(config.executor))
    assert cls is not None and issubclass(cls, Executor)
    return cls(config, api)

