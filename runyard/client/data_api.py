"""The calls of :class:`runyard.client.Client` on what runs record (docs/http-api.md):
metrics, checkpoints, artifacts, blobs and logs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runyard import errors
from runyard.client.arguments import RunRef, many, run_id
from runyard.client.http import Http
from runyard.client.models import (
    Artifact,
    Checkpoint,
    LogChunk,
    MetricPoint,
    MetricTag,
    Page,
    Series,
)


class DataAPI:
    """Metrics, checkpoints, artifacts, blobs and logs of runs, read."""

    _http: Http

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

    def get_metrics(self, run: RunRef, *, tag: str | Sequence[str] | None = None,
                    steps: Sequence[int] | None = None, created_after: datetime | None = None,
                    created_before: datetime | None = None, after_step: int | None = None,
                    cursor: str | None = None, attempt: int | None = None,
                    limit: int | None = None) -> Page[MetricPoint]:
        """A page of points in (tag, step) order: at each step the newest attempt's, or
        ``attempt``'s own. ``page.next`` is the ``after_step`` of the next page when one
        ``tag`` was asked for, else the ``cursor`` of the next page."""
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/metrics", {
            "tag": many(tag), "steps": many(steps), "created_after": created_after,
            "created_before": created_before, "after_step": after_step, "cursor": cursor,
            "attempt": attempt, "limit": limit})
        nxt = data.get("next_after_step")
        return Page(tuple(MetricPoint.from_json(p) for p in data["items"]),
                    nxt if nxt is not None else data.get("next_cursor"))

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
    def list_checkpoints(self, run: RunRef, *, steps: Sequence[int] | None = None,
                         status: str | Sequence[str] | None = None,
                         created_after: datetime | None = None,
                         created_before: datetime | None = None,
                         sort: str | Sequence[str] | None = None, cursor: str | None = None,
                         limit: int | None = None) -> Page[Checkpoint]:
        """One page of a run's checkpoints (``status``: incomplete, complete; ``sort``:
        ``key:asc|desc`` of id, step, attempt, created_at); ``page.next`` is the cursor."""
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/checkpoints", {
            "step": many(steps), "status": many(status), "created_after": created_after,
            "created_before": created_before, "sort": many(sort), "cursor": cursor,
            "limit": limit})
        return Page(tuple(Checkpoint.from_json(c) for c in data["items"]),
                    data.get("next_cursor"))

    def get_checkpoints(self, run: RunRef, **filters: Any) -> list[Checkpoint]:
        """Every checkpoint of a run matching ``filters`` (as :meth:`list_checkpoints`)."""
        out: list[Checkpoint] = []
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list_checkpoints(run, cursor=cursor, **filters)
            out += page.items
            if page.next is None or not page.items:
                return out
            cursor = str(page.next)

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
                 attempt: int | None = None, limit_bytes: int | None = None,
                 tail: int | None = None) -> LogChunk:
        """Captured output from byte ``offset``, or with ``tail`` its last lines; read on
        from ``chunk.next_offset``."""
        data = self._http.get_json(f"/v1/runs/{run_id(run)}/logs",
                                   {"stream": stream, "offset": None if tail else offset,
                                    "attempt": attempt, "limit_bytes": limit_bytes,
                                    "tail": tail})
        return LogChunk.from_json(data)
