"""Queue the demo's jobs: reload the shipped manifest, then find (or submit again) their runs.

A manifest reload is idempotent (docs/manifest.md): on a data directory that has seen the
demo before, its jobs are ``unchanged`` and their runs keep their status, and a completed run
cannot be queued again. So that the demo always trains something, a job whose run ended is
submitted once more as a new run with the same blueprint, config and seed (without the job
key, which stays with the first run); runs still queued or running (a demo interrupted
earlier) are watched again rather than submitted twice.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from typing import Any

from runyard import errors, models
from runyard.client import Client, Run
from runyard.client.http import Http

#: The package of the demo's trainers, the manifest shipped with them, and the ``source`` its
#: reloads are recorded under.
TRAINERS = "runyard.demo"
MANIFEST = "manifest.toml"
SOURCE = "runyard-demo/manifest.toml"
#: Run statuses that mean the run ended: its job is submitted again.
ENDED = frozenset(s.value for s in models.TERMINAL)


def manifest_text() -> str:
    return importlib.resources.files(TRAINERS).joinpath(MANIFEST).read_text("utf-8")


@dataclass(frozen=True)
class Queued:
    """The demo's runs, in manifest order, and how many are new runs of ended jobs."""

    runs: list[Run]
    again: int


def _post(server: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    http = Http(server, token, timeout=60)
    try:
        return dict(http.post_json(path, body) or {})
    finally:
        http.close()


def queue(client: Client, token: str) -> Queued:
    """Reload the demo manifest; return its runs, submitting again the jobs that ended."""
    from runyard.manifest import parse_manifest

    text = manifest_text()
    manifest = parse_manifest(text, source=SOURCE)
    _post(client.server, token, "/v1/manifest/reload", {"text": text, "source": SOURCE})
    by_name: dict[str, list[Run]] = {}
    for run in client.iter_runs(project=manifest.jobs[0].project):
        if run.name:
            by_name.setdefault(run.name, []).append(run)
    runs, again = [], 0
    for job in manifest.jobs:
        same = [r for r in by_name.get(job.name, []) if r.blueprint == job.blueprint]
        if not any(r.raw.get("job_key") == job.key for r in same):
            raise errors.RunyardError(f"the demo job {job.name!r} was not queued")
        active = [r for r in same if r.status not in ENDED]
        if active:  # new, or left queued by an interrupted demo: watch it
            runs.append(max(active, key=lambda r: r.created_at.timestamp()
                            if r.created_at else 0.0))
            continue
        body = {k: v for k, v in job.to_run_request().items() if k != "job_key"}
        runs.append(client.get_run(str(_post(client.server, token, "/v1/runs", body)["id"])))
        again += 1
    return Queued(runs, again)
