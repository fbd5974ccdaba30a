"""The options of ``runyard agent`` (docs/cli.md), checked before anything starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runyard import defaults, errors, sysmetrics
from runyard.agent import registry

#: Longest pause between two claims while idle (the server answered 204), by executor. A
#: Slurm agent serves a whole cluster alone, so asking every second costs the server little,
#: and the pause is part of every run's submit-to-running time (benchmarks/README.md).
CLAIM_MAX_WAIT_S = 5.0
SLURM_CLAIM_MAX_WAIT_S = 1.0


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
    #: None: the executor's default (CLAIM_MAX_WAIT_S, SLURM_CLAIM_MAX_WAIT_S).
    claim_max_wait_s: float | None = None
    #: Start runs as this OS user (:mod:`runyard.agent.isolation`); None: as the agent's.
    train_as: str | None = None
    #: Slurm executor: the partition served (None: the cluster's default), the account jobs
    #: are charged to (None: the user's default), most jobs in flight (None: 100).
    slurm_partition: str | None = None
    slurm_account: str | None = None
    max_jobs: int | None = None
    #: Seconds between system metric samples of each run (runyard.sysmetrics); 0: none.
    sys_interval_s: float = sysmetrics.DEFAULT_INTERVAL_S

    @property
    def idle_claim_cap_s(self) -> float:
        """The longest pause between two claims while idle."""
        if self.claim_max_wait_s is not None:
            return self.claim_max_wait_s
        return SLURM_CLAIM_MAX_WAIT_S if self.executor == "slurm" else CLAIM_MAX_WAIT_S

    def validate(self) -> None:
        registry.check_name(self.executor)
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise errors.ValidationError(f"slots: must be at least 1, got {self.slots!r}",
                                         field="slots")
        for name in ("probe_interval_s", "claim_max_wait_s"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise errors.ValidationError(f"{name}: must be positive, got "
                                             f"{getattr(self, name)!r}", field=name)
        sysmetrics.parse_interval(self.sys_interval_s, "sys_interval_s")
        if self.stop_grace_s < 0:
            raise errors.ValidationError("stop_grace_s: must not be negative",
                                         field="stop_grace_s")
