"""Where an executor placed an attempt: its external id (a Slurm job id), its nodes and the
directory its process runs in, recorded by the attempt's holder through
``POST /v1/attempts/{id}/placement`` (docs/executors.md); and, for a run started by hand, where
its artifact files are until they are archived (:mod:`runyard.archiving`).

Kept on the attempt (each attempt of a run may land elsewhere) and shown by
``GET /v1/runs/{id}`` for the run's latest attempt; each change of job id or nodes is a
``placement`` event (the directory and the artifact location are facts of the start, not
news).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runyard import archiving, errors, models, transitions

if TYPE_CHECKING:
    from runyard.queue import Queue

#: A job id as executors spell them: Slurm's ``12345``, ``12345_7`` (array), ``12345+1``.
_EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,199}$")
#: Most nodes one attempt records.
NODES_MAX = 4096


def check(external_id: Any, nodes: Any) -> tuple[str | None, list[str] | None]:
    """The values checked: 422 naming ``external_id`` or ``nodes[i]``."""
    if external_id is not None and (not isinstance(external_id, str)
                                    or not _EXTERNAL_ID_RE.match(external_id)):
        raise errors.ValidationError(
            f"external_id: expected 1-200 letters, digits and ._:+- , got {external_id!r}",
            field="external_id")
    if nodes is not None:
        if not isinstance(nodes, list) or len(nodes) > NODES_MAX:
            raise errors.ValidationError(f"nodes: expected a list of at most {NODES_MAX} "
                                         "node names", field="nodes")
        for i, node in enumerate(nodes):
            models.validate_host_id(node, f"nodes[{i}]")
    return external_id, nodes


def record(queue: Queue, attempt_id: str, lease: str, *, external_id: str | None = None,
           nodes: Sequence[str] | None = None, workdir: str | None = None,
           artifact_store: str | None = None, actor: str) -> dict[str, Any]:
    """Record where the attempt runs (fenced by its lease like any leased call); returns
    ``{external_id, nodes, workdir, artifact_store}`` as now stored. A new job id or node
    list appends a ``placement`` event; ``artifact_store`` is the run's and changes nothing
    once the run is archived (its files are in the server's store then)."""
    external_id, node_list = check(external_id, None if nodes is None else list(nodes))
    workdir = archiving.check_location(workdir, "workdir")
    artifact_store = archiving.check_location(artifact_store, "artifact_store")
    now = queue.clock()
    peek = queue._peek(attempt_id, now)
    with queue.store.transaction() as tx:
        run, att = queue._fenced(tx, peek, lease)
        values: dict[str, Any] = {}
        if external_id is not None and external_id != att.get("external_id"):
            values["external_id"] = external_id
        if node_list is not None and node_list != att.get("nodes"):
            values["nodes"] = node_list
        if values:
            transitions.event(tx, run["id"], "placement", models.Status(run["status"]),
                              actor, att["number"], now, {**values, "attempt": att["number"]})
        if workdir is not None and workdir != att.get("workdir"):
            values["workdir"] = workdir
        if values:
            tx.update_attempt(attempt_id, values)
        store_now = run.get("artifact_store")
        if artifact_store is not None and not run.get("archived") \
                and artifact_store != store_now:
            tx.update_run(run["id"], {"artifact_store": artifact_store, "updated_at": now})
            store_now = artifact_store
    return {"external_id": values.get("external_id", att.get("external_id")),
            "nodes": values.get("nodes", att.get("nodes")),
            "workdir": values.get("workdir", att.get("workdir")), "artifact_store": store_now}
