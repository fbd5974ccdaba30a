"""The SDK's background thread's work (docs/sdk.md): drain the records that
:class:`runyard.sdk.run.Run`'s verbs queued into its :class:`~runyard.sdk.sink.Sink`, in
batches, and ask the sink for stop and checkpoint requests. A failing sink is warned about
once and tried again on the next drain; nothing here raises into the training loop.
"""

from __future__ import annotations

import collections
from typing import Any

from runyard import timestamps
from runyard.progress.metrics_stream import MetricPoint
from runyard.sdk import sink as sink_mod
from runyard.sdk.notice import Notices
from runyard.sdk.tracker import ProgressTracker

#: The kinds of queued record, each a tuple starting with its kind.
LOG, PROGRESS, CHECKPOINT, WARNING = 0, 1, 2, 3


class SinkWriter:
    """The drain of a :class:`runyard.sdk.run.Run`, run by its daemon thread (and once by the
    constructor, before the thread starts), so the sink is used from one thread at a time."""

    mode: str
    _sink: sink_mod.Sink | None
    _notices: Notices
    _queue: collections.deque[tuple[Any, ...]]
    _tracker: ProgressTracker
    _batch_points: int

    def _drain(self) -> None:
        queue, tracker = self._queue, self._tracker
        rows: list[sink_mod.MetricRow] = []
        count = 0
        while queue:
            record = queue.popleft()
            kind = record[0]
            if kind == LOG:
                _, step, metrics, t = record
                rows.append((step, t, metrics))
                count += len(metrics)
                tracker.observe_step(step, t)
                if metrics:
                    tracker.observe_metrics(metrics)
            elif kind == PROGRESS:
                tracker.apply(record[1], record[2])
            elif kind == WARNING:
                self._call("event", self._sink_write_event, "warning", {"message": record[1]})
            else:
                _, path, step, metrics, status, t = record
                if rows:  # keep the checkpoint after the points logged before it
                    self._call("points", self._sink_points, rows)
                    rows, count = [], 0
                record_ = sink_mod.CheckpointRecord(
                    path=path, step=tracker.step if step is None else step,
                    metrics=dict(tracker.metrics) if metrics is None else metrics,
                    status=status, at=timestamps.format_time(t))
                self._call("checkpoint", self._sink_checkpoint, record_)
            if count >= self._batch_points:
                self._call("points", self._sink_points, rows)
                rows, count = [], 0
        if rows:
            self._call("points", self._sink_points, rows)

    def _flush_snapshot(self, now: float) -> None:
        if self._tracker.due(now):
            self._call("snapshot", self._sink_snapshot, self._tracker.build(now))

    def _call(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a sink failure must not stop training
            self._notices.warn_once(f"sink:{what}", f"runyard: could not write {what} "
                                    f"({self.mode} mode): {exc!r}; will keep trying")

    def _safe_stop_requested(self) -> bool:
        try:
            return self._sink is not None and self._sink.stop_requested()
        except Exception as exc:
            self._notices.warn_once("sink:stop", f"runyard: could not check for a stop "
                                    f"request: {exc!r}")
            return False

    def _safe_checkpoint_request(self) -> str | None:
        ask = getattr(self._sink, "checkpoint_request", None)
        try:
            name = ask() if ask is not None else None
            return name if isinstance(name, str) else None
        except Exception as exc:
            self._notices.warn_once("sink:checkpoint-request", "runyard: could not check for "
                                    f"a checkpoint request: {exc!r}")
            return None

    def _sink_points(self, rows: list[sink_mod.MetricRow]) -> None:
        sink = self._sink
        assert sink is not None
        write_rows = getattr(sink, "write_rows", None)
        if write_rows is not None:  # the compact path (HTTP, embedded): no object per point
            write_rows(rows)
            return
        points: list[MetricPoint] = []
        for step, t, metrics in rows:
            at = timestamps.format_time(t)
            points.extend(MetricPoint(step, tag, value, at) for tag, value in metrics.items())
        sink.write_points(points)

    def _sink_snapshot(self, snap: dict[str, Any]) -> None:
        assert self._sink is not None
        self._sink.write_snapshot(snap)

    def _sink_checkpoint(self, record: sink_mod.CheckpointRecord) -> None:
        assert self._sink is not None
        self._sink.register_checkpoint(record)

    def _sink_write_event(self, kind: str, details: dict[str, Any]) -> None:
        assert self._sink is not None
        self._sink.write_event(kind, details)

    def _sink_close(self, status: str, details: dict[str, Any]) -> None:
        assert self._sink is not None
        self._sink.close(status, details)
