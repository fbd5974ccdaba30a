"""Applying a manifest to the database: the one step of a reload with I/O.

Every new job is validated before anything changes, so an invalid manifest changes nothing;
applying is idempotent (runs are keyed by job id), so a reload interrupted half-way converges
when it is repeated.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from runyard import models, submission
from runyard.manifest.channels import resolve_channels
from runyard.manifest.parser import Manifest
from runyard.manifest.reload import plan_reload
from runyard.queue import Queue


def apply_manifest(queue: Queue, manifest: Manifest, *, dry_run: bool, actor: str,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Plan ``manifest`` against the store and, unless ``dry_run``, queue its new jobs and
    store its blueprints, host policies and channels. Returns the ``POST /v1/manifest/reload``
    answer. Channel secrets are read from ``environ`` (default: this process's)."""
    store = queue.store
    source = manifest.source
    # Before anything changes: a variable missing on the server refuses the whole manifest.
    channels = resolve_channels(manifest.channels, os.environ if environ is None else environ,
                                source)
    # A job already queued from elsewhere (another source name) is unchanged, not new.
    known = store.job_keys()
    keys = set(store.job_keys(source)) | {j.key for j in manifest.jobs if j.key in known}
    hosts = {r["host_id"]: models.HostPolicy.from_dict(r) for r in store.list_host_policies()
             if r.get("source") == source}
    plan = plan_reload(manifest, keys, hosts)
    bps = {bp.name: {"command": list(bp.command), "config_schema": bp.config_schema,
                     "defaults": dict(bp.defaults)} for bp in manifest.blueprints}
    now = time.time()
    requests = [{**job.to_run_request(), "source": source} for job in plan.new_jobs]
    for req in requests:
        submission.build_run(req, bps.get(req.get("blueprint") or ""), owner=actor, now=now)
    channel_states = []
    for ch in channels:
        old = store.get_channel(ch.name)
        state = "new" if old is None else (
            "unchanged" if (old["kind"], old["url"], old.get("secret"), old.get("source"))
            == (ch.kind, ch.url, ch.secret, source) else "changed")
        channel_states.append({"name": ch.name, "kind": ch.kind, "state": state})
        if not dry_run and state != "unchanged":
            store.put_channel(ch.name, ch.kind, ch.url, ch.secret, source)
    if not dry_run:
        for bp in manifest.blueprints:
            if _stored(store.get_blueprint(bp.name)) != (bps[bp.name], source):
                store.put_blueprint(bp.name, list(bp.command), bp.config_schema,
                                    dict(bp.defaults), source)
        queue.fleet.set_host_policies([*plan.new_hosts, *plan.changed_hosts], source=source)
        for req in requests:
            queue.submit(req, actor=actor, owner=actor)
    return {"dry_run": dry_run, "source": source, **plan.to_dict(),
            "channels": channel_states}


def _stored(row: dict[str, Any] | None) -> tuple[dict[str, Any], str | None] | None:
    if row is None:
        return None
    return ({"command": list(row["command"]), "config_schema": row.get("config_schema"),
             "defaults": dict(row.get("defaults") or {})}, row.get("source"))
