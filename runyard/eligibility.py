"""Can this worker serve this run? One pure function, :func:`unmet`, used by the claim and
by :func:`explain` (why a queued run is not running).

Each failed check is returned as a sentence naming the constraint and the host's value, so
``runyard show`` can say *why* a run waits instead of letting it wait silently. See
docs/scheduling.md.
"""

from __future__ import annotations

import fnmatch
import functools
import json
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

from runyard import models

#: A worker with at most this many labels has the runs it cannot serve by label left out in
#: SQL (the claim compares each run's :func:`labels_key` with every subset of its labels);
#: with more, labels are checked in Python only.
SQL_LABELS_MAX = 4
#: How many label-set keys one claim passes to SQL: every non-empty subset, and "" (none).
SQL_LABEL_KEYS = 2**SQL_LABELS_MAX


def labels_key(labels: Mapping[str, str]) -> str:
    """The run's required labels as one comparable string ("" when it requires none)."""
    if not labels:
        return ""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


def served_labels_keys(labels: Mapping[str, str]) -> tuple[str, ...] | None:
    """The :func:`labels_key` of every label set a worker with ``labels`` satisfies (always
    :data:`SQL_LABEL_KEYS` of them, repeated to fill), or None when it has too many labels to
    list them."""
    return _served_keys(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=1024)
def _served_keys(items: tuple[tuple[str, str], ...]) -> tuple[str, ...] | None:
    # A claim asks for this once per worker: a fleet has few distinct label sets.
    if len(items) > SQL_LABELS_MAX:
        return None
    keys = [""] + [labels_key(dict(c)) for n in range(1, len(items) + 1)
                   for c in combinations(items, n)]
    return tuple(keys + [""] * (SQL_LABEL_KEYS - len(keys)))


def policy_from_row(row: Mapping[str, Any]) -> models.HostPolicy | None:
    """The host policy joined onto a worker row, if the manifest declared one."""
    if row.get("allow") is None and row.get("deny") is None:
        return None
    return models.HostPolicy(
        host_id=row["host_id"],
        allow=tuple(row.get("allow") or ()),
        deny=tuple(row.get("deny") or ()),
        slots=row.get("policy_slots"),
        labels=dict(row.get("policy_labels") or {}),
    )


def effective_slots(caps: models.Capabilities, policy: models.HostPolicy | None) -> int:
    """The operator's policy wins over what the agent reports."""
    if policy is not None and policy.slots is not None:
        return policy.slots
    return caps.slots


def effective_labels(caps: models.Capabilities,
                     policy: models.HostPolicy | None) -> dict[str, str]:
    labels = dict(caps.labels)
    if policy is not None:
        labels.update(policy.labels)
    return labels


def unmet(run: Mapping[str, Any], caps: models.Capabilities,
          policy: models.HostPolicy | None) -> list[str]:
    """Why ``caps`` cannot serve ``run`` (empty when it can). Capacity is not checked here."""
    c = models.Constraints.from_dict(run.get("constraints") or {})
    host = caps.host_id
    out: list[str] = []
    wanted = run.get("executor") or "agent"
    if models.run_executor_served(caps.executor) != wanted:
        out.append(f"executor: the run needs a {models.worker_kind_for(wanted)} agent, "
                   f"{host} is a {caps.executor} agent")
    if c.nodes > caps.nodes:
        out.append(f"nodes: needs {c.nodes}, {host} offers {caps.nodes}")
    if c.needs_cuda and not caps.has_cuda:
        what = "require_cuda" if c.require_cuda else ("gpus" if c.gpus else "min_vram_gib")
        out.append(f"{what}: {host} has no CUDA GPU")
    if c.gpus > len(caps.gpus):
        out.append(f"gpus: needs {c.gpus}, {host} has {len(caps.gpus)}")
    if c.min_vram_gib > 0 and caps.has_cuda and caps.max_vram_gib < c.min_vram_gib:
        out.append(f"min_vram_gib: needs {c.min_vram_gib:g} GiB per GPU, "
                   f"{host} has {caps.max_vram_gib:g} GiB")
    if c.min_ram_gib > caps.ram_gib:
        out.append(f"min_ram_gib: needs {c.min_ram_gib:g} GiB, {host} has {caps.ram_gib:g} GiB")
    if c.min_cpus > caps.cpus:
        out.append(f"min_cpus: needs {c.min_cpus:g}, {host} has {caps.cpus:g}")
    if c.allowed_hosts and not any(fnmatch.fnmatchcase(host, p) for p in c.allowed_hosts):
        out.append(f"allowed_hosts: {host} matches none of {list(c.allowed_hosts)}")
    labels = effective_labels(caps, policy)
    for key, want in c.labels.items():
        have = labels.get(key)
        if have != want:
            out.append(f"labels: needs {key}={want}, {host} has "
                       f"{key}={have}" if have is not None else
                       f"labels: needs {key}={want}, {host} has no {key!r} label")
    if policy is not None and not policy.admits(run.get("name"), run.get("blueprint")):
        subject = run.get("name")
        if policy.allow and not any(
            fnmatch.fnmatchcase(s, p) for s in (run.get("name"), run.get("blueprint")) if s
            for p in policy.allow
        ):
            out.append(f"host policy: {host} allows only {list(policy.allow)}, not {subject!r}")
        else:
            out.append(f"host policy: {host} denies {subject!r} ({list(policy.deny)})")
    return out


def explain(run: Mapping[str, Any], workers: Iterable[Mapping[str, Any]], *, now: float,
            stale_after_s: float) -> dict[str, Any]:
    """Why ``run`` is not running: which constraint fails on which registered worker (the
    rows of ``Store.list_workers``), what keeps the eligible ones from taking it, and a
    one-line summary. Shown by ``runyard show`` and ``GET /v1/runs/{id}/explain``."""
    out: dict[str, Any] = {"run": run["id"], "status": run["status"], "workers": []}
    eligible = []
    kind = models.worker_kind_for(run.get("executor") or "agent")
    # A worker of the run's kind: any registered one for the fleet's local agents (an
    # offline one is reported by its state below), a live one for the others.
    connected = False
    for w in workers:
        caps = models.Capabilities.from_dict(w["capabilities"])
        if caps.executor == kind and (kind == "local"
                                      or now - w["last_seen_at"] <= stale_after_s):
            connected = True
        policy = policy_from_row(w)
        reasons = unmet(run, caps, policy)
        slots = effective_slots(caps, policy)
        busy = int(w["active_attempts"])
        state = []
        if w["drained"]:
            state.append("drained")
        if now - w["last_seen_at"] > stale_after_s:
            state.append(f"not seen for {now - w['last_seen_at']:.0f} s")
        if busy >= slots:
            state.append(f"all {slots} slots busy")
        if not reasons:
            eligible.append(w["host_id"])
        out["workers"].append({"host_id": w["host_id"], "executor": caps.executor,
                               "eligible": not reasons,
                               "unmet": reasons, "state": state,
                               "slots": slots, "busy": busy})
    if run["status"] != models.Status.QUEUED.value:
        out["summary"] = f"run is {run['status']}, not waiting in the queue"
    elif not out["workers"]:
        out["summary"] = "no worker is registered yet"
    elif not connected:
        # Said outright: the fleet's agents can never take it, whatever they offer.
        out["summary"] = f"no {kind} agent is connected"
    elif not eligible:
        out["summary"] = "no registered worker can ever serve this run"
    else:
        ready = [w["host_id"] for w in out["workers"] if w["eligible"] and not w["state"]]
        out["summary"] = (f"eligible on {', '.join(eligible)}; " +
                          ("waiting for its turn (priority, then age)" if ready else
                           "every eligible worker is busy, drained or offline"))
    return out
