"""Reload planning: what a manifest changes against what the database already holds.

Pure: no I/O. Applying the plan (queueing new jobs, updating host policies) is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runyard import models
from runyard.manifest.job import Job
from runyard.manifest.parser import Manifest


@dataclass(frozen=True)
class ReloadPlan:
    """The outcome of :func:`plan_reload`.

    ``removed_keys`` are jobs the database holds that the file no longer lists: they stay (and
    keep running) until cancelled. ``removed_hosts`` likewise are informative only.
    """

    new_jobs: list[Job] = field(default_factory=list)
    unchanged_jobs: list[Job] = field(default_factory=list)
    removed_keys: list[str] = field(default_factory=list)
    changed_hosts: list[models.HostPolicy] = field(default_factory=list)
    new_hosts: list[models.HostPolicy] = field(default_factory=list)
    removed_hosts: list[str] = field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return not (self.new_jobs or self.changed_hosts or self.new_hosts)

    def to_dict(self) -> dict[str, Any]:
        """The answer of ``POST /v1/manifest/reload``: new / unchanged / removed jobs, and
        host policies created or changed (``hosts_changed``) and no longer listed."""
        def brief(job: Job) -> dict[str, Any]:
            return {"name": job.name, "job_key": job.key, "blueprint": job.blueprint}

        return {
            "new": [brief(j) for j in self.new_jobs],
            "unchanged": [brief(j) for j in self.unchanged_jobs],
            "removed": list(self.removed_keys),
            "hosts_changed": [h.to_dict() for h in [*self.new_hosts, *self.changed_hosts]],
            "hosts_removed": list(self.removed_hosts),
        }


def plan_reload(manifest: Manifest, existing_job_keys: set[str],
                existing_hosts: Mapping[str, models.HostPolicy]) -> ReloadPlan:
    """Compare ``manifest`` with the job keys and host policies already stored.

    ``existing_job_keys`` should be the keys of runs that came from a manifest (runs
    submitted by hand have none). Order follows the manifest; removed keys are sorted.
    """
    in_file = {job.key for job in manifest.jobs}
    new = [j for j in manifest.jobs if j.key not in existing_job_keys]
    unchanged = [j for j in manifest.jobs if j.key in existing_job_keys]
    new_hosts = [h for h in manifest.hosts if h.host_id not in existing_hosts]
    changed = [h for h in manifest.hosts
               if h.host_id in existing_hosts and existing_hosts[h.host_id] != h]
    listed = {h.host_id for h in manifest.hosts}
    return ReloadPlan(
        new_jobs=new,
        unchanged_jobs=unchanged,
        removed_keys=sorted(set(existing_job_keys) - in_file),
        changed_hosts=changed,
        new_hosts=new_hosts,
        removed_hosts=sorted(set(existing_hosts) - listed),
    )
