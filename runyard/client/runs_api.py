"""The calls of :class:`runyard.client.Client` on runs (docs/http-api.md): submit, act on,
read, list, find, edit and wait for runs, with their progress and events."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from runyard import defaults, errors, models
from runyard.client import resolve
from runyard.client.arguments import (
    Resources,
    RunRef,
    many,
    resources_body,
    rule_object,
    run_id,
)
from runyard.client.http import Http, Repeated, decode, split_command
from runyard.client.models import Event, Page, Progress, Run

#: What :meth:`Client.wait` waits for by default: any end.
TERMINAL = tuple(sorted(s.value for s in models.TERMINAL))
_RUN_ID = re.compile(r"^[0-9a-f]{1,40}$")


class RunsAPI:
    """Runs: the part of the client that submits, changes and reads them."""

    _http: Http

    # ------------------------------------------------------------------ runs: write
    def _run_body(self, name: str | None, command: str | Sequence[str] | None,
                  constraints: Resources | None, options: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if command is not None:
            body["command"] = split_command(command)
        if constraints is not None:
            body["constraints"] = resources_body(constraints)
        body.update({k: v for k, v in options.items() if v is not None})
        return {k: v for k, v in body.items() if v is not None}

    def create_run(self, name: str, *, project: str | None = None,
                   version: str | None = None, notes: str | None = None,
                   blueprint: str | None = None, command: str | Sequence[str] | None = None,
                   config: Mapping[str, Any] | None = None,
                   constraints: Resources | None = None, priority: int | None = None,
                   max_attempts: int | None = None, max_restarts_on_errors: int | None = None,
                   retry_on_exit_codes: Sequence[int] | None = None,
                   probe_interval_s: float | None = None, stall_after_s: float | None = None,
                   env: Mapping[str, str] | None = None, seed: int | None = None,
                   job_key: str | None = None,
                   rules: Sequence[Mapping[str, Any] | str] | None = None) -> Run:
        """Submit a run (a ``blueprint`` or a ``command``); 422 becomes ValidationError.

        ``rules`` are rule objects or their compact form (``"nan loss -> stop"``,
        docs/rules.md)."""
        if (blueprint is None) == (command is None):
            raise errors.ValidationError("give exactly one of blueprint or command",
                                         field="blueprint")
        options = dict(project=project, version=version, notes=notes, blueprint=blueprint,
                       config=None if config is None else dict(config), priority=priority,
                       max_attempts=max_attempts, max_restarts_on_errors=max_restarts_on_errors,
                       retry_on_exit_codes=None if retry_on_exit_codes is None
                       else list(retry_on_exit_codes), probe_interval_s=probe_interval_s,
                       stall_after_s=stall_after_s, env=None if env is None else dict(env),
                       seed=seed, job_key=job_key,
                       rules=None if rules is None else [rule_object(r) for r in rules])
        data = self._http.post_json("/v1/runs", self._run_body(name, command, constraints,
                                                               options))
        # A local-executor answer wraps the run beside its lease.
        return Run.from_json(data["run"] if "lease" in data else data, client=self)

    def validate_run(self, blueprint: str, config: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
        """Check ``config`` against the blueprint's schema; ValidationError lists every field."""
        body = {"blueprint": blueprint, "config": dict(config or {})}
        return dict(self._http.post_json("/v1/runs/validate", body) or {})

    def stop(self, run: RunRef, grace: float = defaults.STOP_GRACE_S) -> Run:
        """Ask the run to stop; SIGKILL follows ``grace`` seconds after SIGTERM."""
        return self._run_action(run, "stop", {"grace_seconds": grace})

    def restart(self, run: RunRef, resources: Resources | None = None) -> Run:
        """Stop the run if active and queue a new attempt, optionally with new constraints."""
        return self._run_action(run, "restart", {"resources": resources_body(resources)})

    def preempt(self, run: RunRef, grace: float = defaults.STOP_GRACE_S) -> Run:
        """Give an active run's slot back (operator): it is stopped within ``grace`` seconds
        (time to save a checkpoint) and requeued; its next attempt resumes from that
        checkpoint (``RUNYARD_RESUME_FROM``)."""
        return self._run_action(run, "preempt", {"grace_seconds": grace})

    def request_checkpoint(self, run: RunRef) -> Run:
        """Ask a running run's training loop to save a checkpoint: its next heartbeat carries
        the request, ``run.checkpoint_requested`` turns true in the SDK, and the request is
        cleared when the attempt registers a checkpoint. 409 unless the run is running."""
        return self._run_action(run, "checkpoint", {})

    def cancel(self, run: RunRef) -> Run:
        return self._run_action(run, "cancel", {})

    def requeue(self, run: RunRef) -> Run:
        return self._run_action(run, "requeue", {})

    def delete(self, run: RunRef) -> None:
        """Remove the run, its metrics and unreferenced blobs (operator)."""
        self._http.request("DELETE", f"/v1/runs/{run_id(run)}")

    def _run_action(self, run: RunRef, action: str, body: dict[str, Any]) -> Run:
        rid = run_id(run)
        data = self._http.post_json(f"/v1/runs/{rid}/{action}", body)
        if isinstance(data, dict) and "id" in data:
            return Run.from_json(data, client=self)
        return self.get_run(rid)

    # ------------------------------------------------------------------ runs: read
    def get_run(self, run: RunRef) -> Run:
        return Run.from_json(self._http.get_json(f"/v1/runs/{run_id(run)}"), client=self)

    def list_runs(self, *, status: str | Sequence[str] | None = None,
                  project: str | Sequence[str] | None = None,
                  name_like: str | Sequence[str] | None = None,
                  ids: Sequence[str] | None = None, id_prefix: str | None = None,
                  version: str | Sequence[str] | None = None,
                  blueprint: str | Sequence[str] | None = None,
                  owner: str | Sequence[str] | None = None,
                  host: str | Sequence[str] | None = None,
                  tags: Sequence[str] | None = None,
                  labels: Mapping[str, str] | None = None,
                  created_after: datetime | None = None,
                  created_before: datetime | None = None,
                  sort: str | Sequence[str] | None = None, cursor: str | None = None,
                  after_id: str | None = None, limit: int | None = None,
                  fields: Sequence[str] | None = None) -> Page[Run]:
        """One page of runs; pass ``page.next`` as ``cursor`` (same filters and sort) for
        the next one (None: the last page).

        Several values of a filter match any of them; a run must carry every one of ``tags``
        and require every one of ``labels``. ``name_like`` is an SQL ILIKE pattern (``%`` any
        run of characters, ``_`` one). ``sort`` is ``key:asc|desc`` items, e.g.
        ``["project:asc", "created_at:desc"]`` (ties by id); see docs/http-api.md.
        """
        if fields is not None and "id" not in fields:
            fields = ["id", *fields]
        if after_id is not None and cursor is None and not _RUN_ID.match(after_id):
            # ``page.next`` used to be a run id passed back as ``after_id``: it is now a
            # cursor (never hex-only), and code written that way keeps working.
            cursor, after_id = after_id, None
        params = {"status": many(status), "project": many(project),
                  "name_like": many(name_like), "id": many(ids), "id_prefix": id_prefix,
                  "version": many(version),
                  "blueprint": many(blueprint), "owner": many(owner), "host": many(host),
                  "tag": many(tags),
                  "label": None if labels is None else Repeated(
                      f"{k}={v}" for k, v in labels.items()),
                  "created_after": created_after, "created_before": created_before,
                  "sort": many(sort), "cursor": cursor, "after_id": after_id, "limit": limit,
                  "fields": None if fields is None else ",".join(fields)}
        data = self._http.get_json("/v1/runs", params)
        return Page(tuple(Run.from_json(item, client=self) for item in data["items"]),
                    data.get("next_cursor"))

    def iter_runs(self, *, page_size: int = 100, **filters: Any) -> Iterator[Run]:
        """Every run matching ``filters`` (as :meth:`list_runs`), following the cursor."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list_runs(cursor=cursor, limit=page_size, **filters)
            yield from page.items
            if page.next is None or not page.items:
                return
            cursor = str(page.next)

    def find_run(self, ref: str, *, project: str | None = None) -> Run:
        """The run ``ref`` names: an id (or a unique prefix of one), else the newest run of
        that name (in ``project`` when given); see :func:`runyard.client.resolve.find_run`."""
        return resolve.find_run(self, ref, project=project)

    def edit(self, run: RunRef, *, name: str | None = None, notes: str | None = None,
             tags: Sequence[str] | None = None) -> Run:
        """Change a run's name, notes or tags (those given; ``tags=[]`` clears them)."""
        body: dict[str, Any] = {"name": name, "notes": notes,
                                "tags": None if tags is None else list(tags)}
        data = self._http.request("PATCH", f"/v1/runs/{run_id(run)}",
                                  json_body={k: v for k, v in body.items() if v is not None})
        return Run.from_json(decode(data), client=self)

    def get_progress(self, run: RunRef) -> Progress:
        return Progress.from_json(self._http.get_json(f"/v1/runs/{run_id(run)}/progress"))

    def get_progress_history(self, run: RunRef, *, attempt: int | None = None,
                             after_id: int | None = None, limit: int | None = None,
                             points: int | None = None) -> Page[dict[str, Any]]:
        """The run's progress snapshots, oldest first: a keyset page (pass ``page.next`` as
        ``after_id``), each entry with its ``snapshot``; or with ``points`` at most that many
        entries standing for the whole history (downsampled, no snapshots). Entries carry
        ``step``, ``at``, ``steps_per_s``, ``percent``, ``epoch``, ``phase``, ``rate``..."""
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/progress/history",
                                   {"attempt": attempt, "after_id": after_id, "limit": limit,
                                    "points": points})
        return Page(tuple(dict(e) for e in data["items"]), data.get("next_after_id"))

    def explain(self, run: RunRef) -> dict[str, Any]:
        """Why a queued run waits: which constraint fails on which registered worker."""
        return dict(self._http.get_json(f"/v1/runs/{run_id(run)}/explain"))

    def get_events(self, run: RunRef, *, after_seq: int | None = None, limit: int | None = None,
                   order: str | None = None) -> Page[Event]:
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/events",
                                   {"after_seq": after_seq, "limit": limit, "order": order})
        return Page(tuple(Event.from_json(e) for e in data["items"]), data.get("next_after_seq"))

    def iter_events(self, run: RunRef, *, after_seq: int = 0, page_size: int = 100
                    ) -> Iterator[Event]:
        """Every event of the run in ``seq`` order."""
        while True:
            page = self.get_events(run, after_seq=after_seq, limit=page_size, order="asc")
            yield from page.items
            if page.next is None or not page.items:
                return
            after_seq = int(page.next)

    # ------------------------------------------------------------------ live
    def wait(self, run: RunRef, until: Sequence[str] | None = None,
             timeout: float | None = None, on_update: Callable[[Run], None] | None = None,
             poll_s: float = 1.0) -> Run:
        """Poll until the run reaches a status in ``until`` or ends; return that Run.

        ``on_update(run)`` is called first and then whenever the status or progress changes.
        Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        wanted = set(until or TERMINAL)
        unknown = sorted(wanted - {s.value for s in models.Status})
        if unknown:
            raise errors.ValidationError(f"until: unknown status {unknown[0]!r}", field="until")
        deadline = None if timeout is None else time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            current = self.get_run(run)
            key = (current.status, current.attempt, current.progress and current.progress.raw)
            if key != last and on_update is not None:
                on_update(current)
            last = key
            if current.status in wanted or current.is_terminal:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {current.id} is still {current.status} "
                                   f"after {timeout:g} s")
            pause = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))
