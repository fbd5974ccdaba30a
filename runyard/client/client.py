"""``runyard.Client``: the Python management API over the HTTP contract (docs/http-api.md)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from runyard import defaults, errors, models
from runyard.client import sse
from runyard.client.http import DEFAULT_TIMEOUT, Http, decode, split_command
from runyard.client.models import (
    Artifact,
    Checkpoint,
    Event,
    LogChunk,
    MetricPoint,
    MetricTag,
    Page,
    Progress,
    Run,
    Series,
    StreamEvent,
    Worker,
)

#: Where a client connects when neither ``server=`` nor ``RUNYARD_SERVER`` says.
DEFAULT_SERVER = f"http://{defaults.HOST}:{defaults.PORT}"
#: What :meth:`Client.wait` waits for by default: any end.
TERMINAL = tuple(sorted(s.value for s in models.TERMINAL))

RunRef = Run | str
Resources = Mapping[str, Any] | models.Constraints


def run_id(run: RunRef) -> str:
    """The id of a :class:`Run` or an id string."""
    value = run.id if isinstance(run, Run) else run
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(f"run: expected a run id, got {value!r}", field="run")
    return value


def rule_object(rule: Mapping[str, Any] | str) -> dict[str, Any]:
    """A rule as the API takes it: an object as given, a compact form parsed (its mistakes
    are reported here, before any request)."""
    if isinstance(rule, str):
        from runyard.rules import compact

        return compact.parse(rule)
    return dict(rule)


def _resources(resources: Resources | None) -> dict[str, Any] | None:
    if resources is None:
        return None
    if isinstance(resources, models.Constraints):
        return resources.to_dict()
    return dict(resources)


class Client:
    """Talks to one Runyard server. Use as a context manager or call :meth:`close`.

    ``server`` defaults to ``$RUNYARD_SERVER`` (else ``http://127.0.0.1:8470``), ``token`` to
    ``$RUNYARD_TOKEN``. ``transport`` swaps the network (``httpx.MockTransport`` in tests).
    """

    def __init__(self, server: str | None = None, token: str | None = None, *,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = (server or os.environ.get("RUNYARD_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("RUNYARD_TOKEN") or None
        self._http = Http(self.server, token, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client(server={self.server!r})"

    # ------------------------------------------------------------------ runs: write
    def _run_body(self, name: str | None, command: str | Sequence[str] | None,
                  constraints: Resources | None, options: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if command is not None:
            body["command"] = split_command(command)
        if constraints is not None:
            body["constraints"] = _resources(constraints)
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
        return self._run_action(run, "restart", {"resources": _resources(resources)})

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
                  project: str | None = None, name_like: str | None = None,
                  created_after: datetime | None = None,
                  created_before: datetime | None = None, host: str | None = None,
                  after_id: str | None = None, limit: int | None = None,
                  sort: str | None = None, fields: Sequence[str] | None = None) -> Page[Run]:
        """One page of runs; pass ``page.next`` as ``after_id`` for the next one.

        ``name_like`` is an SQL ILIKE pattern (``%`` any run of characters, ``_`` one).
        """
        if fields is not None and "id" not in fields:
            fields = ["id", *fields]
        params = {"status": status, "project": project, "name_like": name_like,
                  "created_after": created_after, "created_before": created_before,
                  "host": host, "after_id": after_id, "limit": limit, "sort": sort,
                  "fields": fields}
        data = self._http.get_json("/v1/runs", params)
        return Page(tuple(Run.from_json(item, client=self) for item in data["items"]),
                    data.get("next_after_id"))

    def iter_runs(self, *, page_size: int = 100, **filters: Any) -> Iterator[Run]:
        """Every run matching ``filters`` (as :meth:`list_runs`), following the cursor."""
        after = filters.pop("after_id", None)
        while True:
            page = self.list_runs(after_id=after, limit=page_size, **filters)
            yield from page.items
            if page.next is None or not page.items:
                return
            after = str(page.next)

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

    # ------------------------------------------------------------------ metrics
    def get_metric_tags(self, run: RunRef) -> list[MetricTag]:
        """Every tag of a run, all pages followed."""
        tags: list[MetricTag] = []
        after: str | None = None
        while True:
            data = self._http.get_json(f"/v1/runs/{run_id(run)}/metrics/tags",
                                       {"after": after, "limit": 1000})
            tags += [MetricTag.from_json(t) for t in data["items"]]
            after = data.get("next_after")
            if after is None or not data["items"]:
                return tags

    def get_metrics(self, run: RunRef, *, tag: str | None = None, after_step: int | None = None,
                    attempt: int | None = None, limit: int | None = None) -> Page[MetricPoint]:
        """A page of points: at each step the newest attempt's, or ``attempt``'s own."""
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/metrics",
                                   {"tag": tag, "after_step": after_step, "attempt": attempt,
                                    "limit": limit})
        return Page(tuple(MetricPoint.from_json(p) for p in data["items"]),
                    data.get("next_after_step"))

    def get_all_metrics(self, run: RunRef, *, tag: str | None = None,
                        attempt: int | None = None, page_size: int = 1000
                        ) -> list[MetricPoint]:
        """Every point (of one tag, or of every tag, tag by tag), all pages followed."""
        tags = [tag] if tag is not None else [t.tag for t in self.get_metric_tags(run)]
        points: list[MetricPoint] = []
        for name in tags:
            after: int | None = None
            while True:
                page = self.get_metrics(run, tag=name, after_step=after, attempt=attempt,
                                        limit=page_size)
                points.extend(page.items)
                if page.next is None or not page.items:
                    break
                after = int(page.next)
        return points

    def get_series(self, run: RunRef, tag: str, *, points: int | None = None,
                   min_step: int | None = None, max_step: int | None = None) -> Series:
        """A downsampled series: at most ``points`` buckets of min, max and last."""
        data = self._http.get_json(
            f"/v1/runs/{run_id(run)}/metrics/{quote(tag, safe='')}/series",
            {"points": points, "min_step": min_step, "max_step": max_step})
        return Series.from_json(data)

    # ------------------------------------------------------------------ files
    def get_checkpoints(self, run: RunRef) -> list[Checkpoint]:
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/checkpoints")
        return [Checkpoint.from_json(c) for c in data["items"]]

    def get_artifacts(self, run: RunRef) -> list[Artifact]:
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/artifacts")
        return [Artifact.from_json(a) for a in data["items"]]

    def download_blob(self, sha256: str, dest: str | os.PathLike[str]) -> Path:
        """Stream a blob to ``dest`` (written beside, then renamed), checking its sha256."""
        target = Path(dest)
        partial = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        try:
            with self._http.stream("GET", f"/v1/blobs/{sha256}") as response, \
                    open(partial, "wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256.lower():
                raise errors.ChecksumMismatch(
                    f"blob {sha256}: downloaded content hashes to {digest.hexdigest()}")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def get_logs(self, run: RunRef, *, stream: str = "stdout", offset: int = 0,
                 attempt: int | None = None, limit_bytes: int | None = None) -> LogChunk:
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/logs",
                                   {"stream": stream, "offset": offset, "attempt": attempt,
                                    "limit_bytes": limit_bytes})
        return LogChunk.from_json(data)

    # ------------------------------------------------------------------ fleet
    def list_workers(self) -> list[Worker]:
        return [Worker.from_json(w) for w in self._http.get_json("/v1/workers")["items"]]

    def drain(self, host: str) -> dict[str, Any]:
        """The worker finishes what it runs and claims nothing new (operator)."""
        return dict(self._http.post_json(f"/v1/workers/{quote(host, safe='')}/drain") or {})

    def resume(self, host: str) -> dict[str, Any]:
        return dict(self._http.post_json(f"/v1/workers/{quote(host, safe='')}/resume") or {})

    def remove_worker(self, host: str) -> dict[str, Any]:
        """Forget a worker that holds no active attempt; it registers again when it next
        claims (operator)."""
        resp = self._http.request("DELETE", f"/v1/workers/{quote(host, safe='')}")
        return dict(decode(resp) or {})

    def reload_manifest(self, path: str | os.PathLike[str], *, dry_run: bool = False,
                        source: str | None = None) -> dict[str, Any]:
        """Send a manifest file (with the schema files it names): new jobs are queued, host
        policies updated; ``dry_run`` only reports new / unchanged / removed (operator)."""
        from runyard.manifest import request_body

        body = request_body(path, source)
        params = {"dry_run": "true" if dry_run else "false"}
        return dict(self._http.post_json("/v1/manifest/reload", body, params=params) or {})

    # ------------------------------------------------------------------ rules
    def list_rules(self, project: str | None = None) -> list[dict[str, Any]]:
        """Stored project and server-wide rules (``project``: only that project's)."""
        params = {} if project is None else {"project": project}
        return [dict(r) for r in self._http.get_json("/v1/rules", params)["items"]]

    def add_rule(self, rule: Mapping[str, Any] | str, *, project: str | None = None
                 ) -> dict[str, Any]:
        """Add a rule (an object, or its compact form) to ``project``; without one it is
        server-wide (operators). A user's project rule watches that user's runs only."""
        body = rule_object(rule)
        if project is not None:
            body["project"] = project
        return dict(self._http.post_json("/v1/rules", body))

    def delete_rule(self, rule_id: int) -> None:
        """Remove a stored rule (its state on every run goes with it)."""
        decode(self._http.request("DELETE", f"/v1/rules/{int(rule_id)}"))

    def list_blueprints(self) -> list[dict[str, Any]]:
        return [dict(b) for b in self._http.get_json("/v1/blueprints")["items"]]

    def health(self) -> dict[str, Any]:
        return dict(self._http.get_json("/v1/health") or {})

    # ------------------------------------------------------------------ notifications
    def list_channels(self) -> list[dict[str, Any]]:
        """Notification channels: name, kind, redacted URL, whether signed (never secrets)."""
        return [dict(c) for c in self._http.get_json("/v1/channels")["items"]]

    def add_channel(self, name: str, kind: str, url: str, secret: str | None = None
                    ) -> dict[str, Any]:
        """Create or replace a channel (operator): ``kind`` ``webhook`` (signed with
        ``secret`` when given) or ``slack`` (an incoming-webhook URL, no secret)."""
        body = {"name": name, "kind": kind, "url": url}
        if secret is not None:
            body["secret"] = secret
        return dict(self._http.post_json("/v1/channels", body) or {})

    def delete_channel(self, name: str) -> None:
        """Remove a channel (operator); its pending deliveries fail."""
        decode(self._http.request("DELETE", f"/v1/channels/{quote(name, safe='')}"))

    def test_channel(self, name: str) -> dict[str, Any]:
        """Queue a test notification to the channel (operator); ``delivery`` is its id in
        :meth:`list_notifications`."""
        return dict(self._http.post_json(f"/v1/channels/{quote(name, safe='')}/test") or {})

    def list_notifications(self, *, run: RunRef | None = None, channel: str | None = None,
                           status: str | None = None, limit: int | None = None,
                           before_id: int | None = None) -> list[dict[str, Any]]:
        """The delivery log, newest first: status, attempts, last error and times."""
        params = {"run_id": None if run is None else run_id(run), "channel": channel,
                  "status": status, "limit": limit, "before_id": before_id}
        return [dict(n) for n in self._http.get_json("/v1/notifications", params)["items"]]

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

    def stream_events(self, *, run: RunRef | None = None, last_event_id: str | None = None,
                      read_timeout: float = 60.0, reconnect: bool = True
                      ) -> Iterator[StreamEvent]:
        """Live server-sent events (status changes, progress) of every run or of ``run``.

        Starts with what happens after the call (or after ``last_event_id``: ``"0"`` replays
        all history) and resumes with ``Last-Event-ID`` after a dropped connection. Close the
        generator to close the connection.
        """
        params = None if run is None else {"run_id": run_id(run)}
        return sse.stream(self._http, "/v1/events/stream", last_event_id=last_event_id,
                          params=params, read_timeout=read_timeout, reconnect=reconnect)
