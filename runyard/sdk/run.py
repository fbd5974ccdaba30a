"""The training-side SDK: one :class:`Run` object with a few verbs.

``log()`` and ``progress()`` only append to a bounded in-memory queue; a daemon thread drains
it every :data:`DRAIN_INTERVAL_S` into a :class:`~runyard.sdk.sink.Sink`. Nothing in here
raises into the training loop once the run has started: bad values are dropped with one
warning (:mod:`runyard.sdk.values`), and a failing sink is warned about once and retried on
the next drain (:mod:`runyard.sdk.writer`, what the thread does).
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from runyard import errors, sysmetrics
from runyard.sdk import choose, file_sink, projects, settings, signals, values
from runyard.sdk import sink as sink_mod
from runyard.sdk.notice import Notices
from runyard.sdk.tracker import DEFAULT_MIN_INTERVAL_S, DEFAULT_WARMUP_STEPS, ProgressTracker
from runyard.sdk.values import MAX_STEP, TAG_MAX
from runyard.sdk.writer import CHECKPOINT, LOG, PROGRESS, WARNING, SinkWriter

__all__ = ["BATCH_POINTS", "DRAIN_INTERVAL_S", "FINISH_TIMEOUT_S", "MAX_QUEUED", "MAX_STEP",
           "MAX_WARNING_EVENTS", "MESSAGE_MAX", "TAG_MAX", "Run", "start_run"]

#: How often the background thread drains the queue and polls for a stop request.
DRAIN_INTERVAL_S = 0.1
#: Records (log/progress/checkpoint calls) held in memory at most; beyond it new records are
#: dropped with one warning rather than blocking training or growing without bound.
MAX_QUEUED = 200_000
#: Points handed to the sink in one call at most (a sink's ``batch_points`` if it has one).
BATCH_POINTS = 50_000
#: How long ``finish()`` waits for the background thread to flush.
FINISH_TIMEOUT_S = 10.0
#: Longest ``message`` kept in a snapshot.
MESSAGE_MAX = 4096

#: Warnings recorded as run events at most (each distinct one is warned about once anyway).
MAX_WARNING_EVENTS = 100


def _is_writer(env: Mapping[str, str], all_ranks: bool) -> bool:
    return all_ranks or env.get("RANK", "") in ("", "0")


class Run(SinkWriter):
    """A tracked training run. Use ``with start_run(...) as run:`` or call ``finish()``.

    Attributes: ``run_id`` (also ``id``), ``attempt``, ``mode`` (``agent``, ``local``, ... or
    ``inactive`` on non-zero ranks), ``project``, ``config`` (dict), ``checkpoint_dir`` and
    ``artifact_dir`` (Path or None), ``resume_from`` (the checkpoint to start from, or None),
    ``archive`` (whether the artifact directory is archived at the end), ``status`` (None
    until finished).

    ``project`` defaults to ``RUNYARD_PROJECT``, else ``project`` in the directory's
    ``runyard.toml``, else the directory's name (:mod:`runyard.sdk.projects`); ``archive``
    to ``RUNYARD_ARCHIVE`` (default off). Under an agent both are the run's already.
    """

    def __init__(self, name: str | None = None, project: str | None = None,
                 config: Mapping[str, Any] | None = None, *,
                 total_steps: int | None = None, total_epochs: float | None = None,
                 all_ranks: bool = False, run_id: str | None = None,
                 tags: Mapping[str, str] | None = None,
                 sink: sink_mod.Sink | None = None, env: Mapping[str, str] | None = None,
                 snapshot_interval_s: float = DEFAULT_MIN_INTERVAL_S,
                 warmup_steps: int = DEFAULT_WARMUP_STEPS,
                 handle_sigterm: bool = True, archive: bool | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.status: str | None = None
        self._notices = Notices(on_warn=self._record_warning)
        self._warning_events = 0
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._tags: set[str] = set()
        self._next_step = 0
        self._closed = False
        self._stop = False
        under_agent = bool(env.get("RUNYARD_PROGRESS_FILE"))
        if not under_agent:
            project = projects.resolve(project, env, warn=self._notices.warn_once)
        self.name, self.project = name, project
        self.archive = not under_agent and settings.archive_wanted(
            archive, env, self._notices.warn_once)
        self._stop_reason: str | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._final: tuple[str, dict[str, Any]] | None = None
        self._restore_signals: Any = None
        self._stop_file = env.get("RUNYARD_STOP_FILE")
        self._last_stop_check = 0.0
        # The pending checkpoint request's name (from the sink, or the request file on
        # non-writing ranks) and the last one the loop answered with checkpoint().
        self._checkpoint_request: str | None = None
        self._checkpoint_answered: str | None = None
        request_file = env.get("RUNYARD_CHECKPOINT_REQUEST_FILE")
        self._request_watch = file_sink.RequestWatch(Path(request_file)) if request_file \
            else None
        self._last_request_check = 0.0
        user_config = dict(config or {})
        info = sink_mod.RunInfo(name=name, project=project, config=user_config,
                                run_id=run_id, tags=dict(tags or {}), archive=self.archive)
        self._sink: sink_mod.Sink | None = None
        if sink is not None or _is_writer(env, all_ranks):
            try:
                self._sink = sink or choose.select_sink(env, info,
                                                          warn=self._notices.warn_once)
            except errors.ConfigError:
                raise  # a broken RUNYARD_CONFIG_FILE: the run must not train on a wrong config
            except Exception as exc:  # e.g. an unwritable data dir: train anyway
                self._notices.warn_once("sink", f"runyard: tracking disabled: {exc!r}")
        self._batch_points: int = getattr(self._sink, "batch_points", BATCH_POINTS)
        if self._sink is None:
            # A non-writing rank: nothing is written, but config and stop requests still work.
            self.mode = "inactive"
            self.run_id = env.get("RUNYARD_RUN_ID") or run_id or ""
            self.attempt = int(env.get("RUNYARD_ATTEMPT") or 1)
            self.checkpoint_dir = Path(env["RUNYARD_CHECKPOINT_DIR"]) if env.get(
                "RUNYARD_CHECKPOINT_DIR") else None
            self.artifact_dir = Path(env["RUNYARD_ARTIFACT_DIR"]) if env.get(
                "RUNYARD_ARTIFACT_DIR") else None
            config_file = env.get("RUNYARD_CONFIG_FILE")
            loaded = file_sink.read_config_file(Path(config_file)) if config_file else None
        else:
            self.mode = self._sink.mode
            self.run_id, self.attempt = self._sink.run_id, self._sink.attempt
            self.checkpoint_dir, self.artifact_dir = (self._sink.checkpoint_dir,
                                                      self._sink.artifact_dir)
            loaded = self._sink.load_config()
        #: The checkpoint an earlier attempt left, when the agent handed one over
        #: (``RUNYARD_RESUME_FROM``, docs/lifecycle.md); None on a first attempt.
        self.resume_from: Path | None = Path(env["RUNYARD_RESUME_FROM"]) if env.get(
            "RUNYARD_RESUME_FROM") else None
        # The orchestrator's validated config wins over the defaults given in code.
        self.config: dict[str, Any] = {**user_config, **(loaded or {})}
        self._tracker = ProgressTracker(
            run_id=self.run_id, attempt=self.attempt, total_steps=total_steps,
            total_epochs=total_epochs, min_interval_s=snapshot_interval_s,
            warmup_steps=warmup_steps)
        # System metrics of this process (sys/ tags); under an agent the agent samples.
        self._sys: sysmetrics.Recorder | None = None
        interval = settings.sys_interval(env) if self._sink is not None \
            and self.mode != "agent" else 0.0
        if interval > 0:
            self._sys = sysmetrics.Recorder(os.getpid(), origin=time.time(),
                                            interval_s=interval,
                                            gpus=sysmetrics.visible_gpus(env))
        if handle_sigterm:
            self._restore_signals = signals.install(self._on_sigterm)
        if self._sink is not None:
            # The start is recorded before start_run returns (the thread does not exist yet,
            # so the sink is still used from one thread at a time).
            self._call("event", self._sink_write_event, "start",
                       {"pid": os.getpid(), "name": name, "project": project,
                        "mode": self.mode})
            self._flush_snapshot(time.time())
            self._thread = threading.Thread(target=self._loop, name="runyard-sdk", daemon=True)
            self._thread.start()
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ verbs
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` (tag to number) at ``step`` (default: previous step + 1)."""
        if self._sink is None or self._closed:
            return
        if step is None:
            step = self._next_step
        elif type(step) is not int or step < 0 or step > MAX_STEP:
            step = values.coerce_step(self._notices, step)
            if step is None:
                return
        self._next_step = step + 1
        tags = self._tags
        clean = {}
        try:
            items = metrics.items()
        except AttributeError:
            self._notices.warn_once("metrics-type", f"runyard: log() expects a mapping of "
                                    f"names to numbers, got {type(metrics).__name__}; ignored")
            return
        for tag, value in items:
            if type(value) is not float and type(value) is not int:
                value = values.coerce_value(self._notices, str(tag)[:80], value)
                if value is None:
                    continue
            if tag not in tags and not values.admit_tag(self._notices, tags, tag):
                continue
            clean[tag] = value
        queue = self._queue
        if len(queue) >= MAX_QUEUED:
            self._drop("log")
            return
        queue.append((LOG, step, clean, time.time()))

    def progress(self, step: int | None = None, total_steps: int | None = None,
                 epoch: float | None = None, total_epochs: float | None = None,
                 phase: str | None = None, message: str | None = None) -> None:
        """Report progress explicitly; only the arguments given change the snapshot."""
        if self._sink is None or self._closed:
            return
        fields: dict[str, Any] = {}
        if step is not None and (step := values.coerce_step(self._notices, step)) is not None:
            fields["step"] = step
            self._next_step = step + 1
        for key, value in (("total_steps", total_steps), ("epoch", epoch),
                           ("total_epochs", total_epochs)):
            if value is not None:
                number = values.coerce_value(self._notices, key, value)
                if number is not None and math.isfinite(number) and number >= 0:
                    fields[key] = int(number) if key == "total_steps" else number
                else:
                    self._notices.warn_once(f"progress:{key}", f"runyard: progress({key}="
                                            f"{value!r}) ignored: expected a number >= 0")
        if phase is not None:
            fields["phase"] = str(phase)[:64] or "train"
        if message is not None:
            fields["message"] = str(message)[:MESSAGE_MAX]
        if len(self._queue) >= MAX_QUEUED:
            self._drop("progress")
            return
        self._queue.append((PROGRESS, fields, time.time()))

    def checkpoint(self, path: str | os.PathLike[str], step: int | None = None,
                   metrics: Mapping[str, Any] | None = None) -> None:
        """Register a checkpoint written at ``path`` (the agent uploads it).

        ``step`` defaults to the latest step and ``metrics`` to the latest values. It answers
        a pending checkpoint request (:attr:`checkpoint_requested` turns false).
        """
        if self._sink is None and self._request_watch is not None:
            self._checkpoint_request = self._request_watch.current()  # as of this save
        self._checkpoint_answered = self._checkpoint_request
        if self._sink is None or self._closed:
            return
        try:
            full = os.path.abspath(os.fspath(path))
            status = "complete" if os.path.exists(full) else "incomplete"
        except (TypeError, ValueError) as exc:
            self._notices.warn_once("checkpoint-path", f"runyard: checkpoint path {path!r} "
                                    f"ignored: {exc}")
            return
        if status == "incomplete":
            self._notices.warn_once(f"checkpoint:{full}", f"runyard: checkpoint {full} does "
                                    "not exist (yet); recorded as incomplete")
        clean = None
        if metrics is not None:
            clean = {}
            for key, value in metrics.items():
                number = values.coerce_value(self._notices, str(key), value)
                if number is not None:
                    clean[str(key)] = number
        self._queue.append((CHECKPOINT, full,
                            None if step is None else values.coerce_step(self._notices, step),
                            clean, status, time.time()))

    @property
    def should_stop(self) -> bool:
        """True once a stop was requested (stop file, server, or SIGTERM): save and leave."""
        if not self._stop and self._sink is None and self._stop_file:
            now = time.monotonic()  # non-writing ranks have no thread: poll, at most 10/s
            if now - self._last_stop_check >= DRAIN_INTERVAL_S:
                self._last_stop_check = now
                if os.path.exists(self._stop_file):
                    self._request_stop("stop_file")
        return self._stop

    @property
    def checkpoint_requested(self) -> bool:
        """True while someone asks this run to save a checkpoint (``runyard checkpoint``, the
        UI, a rule): save one and register it with :meth:`checkpoint`, which answers the
        request. Each request is answered once, however long its upload takes."""
        if self._sink is None and self._request_watch is not None:
            now = time.monotonic()  # non-writing ranks have no thread: poll, at most 10/s
            if now - self._last_request_check >= DRAIN_INTERVAL_S:
                self._last_request_check = now
                self._checkpoint_request = self._request_watch.current()
        pending = self._checkpoint_request
        return pending is not None and pending != self._checkpoint_answered

    def finish(self, status: str | None = None, *, error: BaseException | None = None,
               timeout: float = FINISH_TIMEOUT_S) -> None:
        """End the run: flush, write the final snapshot and status. Idempotent.

        ``status`` defaults to ``stopped`` after a stop request and ``completed`` otherwise;
        with ``error`` it defaults to ``failed`` and the traceback is recorded.
        """
        if self._closed:
            return
        self._closed = True
        if status is None:
            status = "failed" if error is not None else (
                "stopped" if self._stop else "completed")
        details: dict[str, Any] = {}
        if self._stop_reason:
            details["stop_reason"] = self._stop_reason
        if error is not None:
            details["error"] = f"{type(error).__name__}: {error}"
            details["traceback"] = "".join(traceback.format_exception(error))[-16_000:]
        self.status = status
        self._final = (status, details)
        try:
            atexit.unregister(self._at_exit)
        except Exception:  # pragma: no cover - atexit is gone during interpreter shutdown
            pass
        if self._restore_signals is not None:
            self._restore_signals()
        if self._thread is not None:
            self._wake.set()
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._notices.warn_once("finish-timeout", f"runyard: tracking did not flush "
                                        f"within {timeout} s; some data may be missing")

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("stopped", error=exc)
        elif isinstance(exc, SystemExit):
            if exc.code == signals.SIGTERM_EXIT_CODE or self._stop:
                self.finish("stopped")
            else:
                self.finish("completed" if exc.code in (None, 0) else "failed", error=(
                    None if exc.code in (None, 0) else exc))
        else:
            self.finish("failed", error=exc)

    def __repr__(self) -> str:
        return f"<Run {self.run_id} mode={self.mode} status={self.status}>"

    @property
    def id(self) -> str:
        """The run's id: the same as :attr:`run_id` (the name W&B users type first)."""
        return self.run_id

    # ------------------------------------------------------------------ slow paths
    def _drop(self, what: str) -> None:
        self._notices.warn_once("queue-full", f"runyard: {MAX_QUEUED} records waiting to be "
                                f"written; {what} calls are dropped until it drains")

    def _record_warning(self, message: str) -> None:
        # Called from any thread; deque.append is atomic. The drain sends it as an event.
        if self._warning_events < MAX_WARNING_EVENTS and not self._closed:
            self._warning_events += 1
            self._queue.append((WARNING, message[:2000]))

    def _on_sigterm(self) -> None:
        self._request_stop("sigterm")

    def _request_stop(self, reason: str) -> None:
        if not self._stop:
            self._stop_reason = reason
            self._stop = True

    def _at_exit(self) -> None:
        # A plain start_run() never finished: a script ending with an uncaught exception
        # leaves it in sys.last_value (set before atexit runs).
        error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        self.finish(error=error if isinstance(error, BaseException) else None)

    # ------------------------------------------------------------------ background thread
    def _loop(self) -> None:
        stop_announced = False
        while True:
            final = self._final is not None
            try:
                self._drain()
                if not stop_announced and (self._stop or self._safe_stop_requested()):
                    stop_announced = True
                    self._request_stop(self._stop_reason or "stop_file")
                    self._call("event", self._sink_write_event, "stop_requested",
                               {"reason": self._stop_reason})
                self._checkpoint_request = self._safe_checkpoint_request()
                if self._sys is not None:
                    rows = self._sys.poll()
                    if rows:
                        self._call("points", self._sink_points, rows)
                if final:
                    if self._sys is not None:
                        self._sys.close()
                    assert self._final is not None
                    status, details = self._final
                    self._tracker.finish(status)
                    self._flush_snapshot(time.time())
                    self._call("close", self._sink_close, status, details)
                    return
                self._flush_snapshot(time.time())
            except Exception as exc:  # never let the thread die silently
                self._notices.warn_once("loop", f"runyard: tracking error: {exc!r}")
            self._wake.wait(DRAIN_INTERVAL_S)


def start_run(name: str | None = None, project: str | None = None,
              config: Mapping[str, Any] | None = None, **options: Any) -> Run:
    """Start tracking a run; see :class:`Run` for the options. Use as ``with`` or call."""
    return Run(name, project, config, **options)
