"""Supervising one training process, the way rq supervises its work horse.

:meth:`ManagedProcess.start` launches an argv list (never through a shell) in its own session
and process group, so a stop reaches the whole tree the training process builds (data-loader
workers, ``torchrun`` ranks). Both output streams are read by threads: every chunk is appended
to ``stdout.log`` / ``stderr.log`` and handed to ``on_output(stream, offset, data)`` where
``offset`` is the chunk's byte position in that log, so the agent can forward logs in order
and resume after a restart. The last stderr lines are kept for the failure message.

A stop is cooperative first (docs/progress-protocol.md): the stop file appears, the group gets
SIGTERM, and SIGKILL follows when the grace period ends. :meth:`ManagedProcess.tick` (or
:meth:`~ManagedProcess.poll` / :meth:`~ManagedProcess.wait`, which call it) enforces the
deadline; a timer thread enforces it too, so a busy caller cannot let a process outlive it.
A command that cannot start is a result (``setup_error``), never an exception, so one bad run
cannot crash the agent's loop.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from runyard import defaults

log = logging.getLogger(__name__)

#: ``on_output(stream, offset, data)``: ``stream`` is ``"stdout"`` or ``"stderr"``, ``offset``
#: the byte offset of ``data`` in that stream's log file. Called from a reader thread.
OutputCallback = Callable[[str, int, bytes], None]

#: Largest chunk one read hands on (a reader forwards whatever the pipe holds, up to this).
CHUNK_BYTES = 64 * 1024
#: How long the result waits for the reader threads to drain the pipes after the exit.
READER_JOIN_S = 5.0
#: Characters kept of one stderr line in the tail.
TAIL_LINE_MAX = 2000
#: Step of :meth:`ManagedProcess.wait`'s polling loop.
POLL_STEP_S = 0.05

STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"


@dataclass(frozen=True)
class Launch:
    """What to run: an argv list, its working directory, environment and log directory.

    ``env`` is laid over the agent's own environment unless ``inherit_env`` is false.
    ``PYTHONUNBUFFERED=1`` is added unless set, so Python output reaches the logs live.
    ``stop_file`` is created by :meth:`ManagedProcess.request_stop` (``RUNYARD_STOP_FILE``).
    Without ``log_dir`` output goes only to the callback and the stderr tail.
    """

    argv: Sequence[str]
    cwd: str | os.PathLike[str] | None = None
    env: Mapping[str, str] | None = None
    log_dir: str | os.PathLike[str] | None = None
    stop_file: str | os.PathLike[str] | None = None
    inherit_env: bool = True
    #: Run as this uid, primary gid and groups (the agent must be allowed to switch).
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None


def signal_name(signum: int) -> str:
    """``9`` -> ``"SIGKILL"``."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


_SIGNAL_HINTS = {
    "SIGKILL": " (often the kernel's out-of-memory killer)",
    "SIGSEGV": " (segmentation fault)",
    "SIGABRT": " (aborted)",
    "SIGBUS": " (bus error)",
}


@dataclass(frozen=True)
class ExitResult:
    """How a supervised process ended.

    ``exit_code`` is None when a signal ended it (``signal`` holds the number) or when it
    never started (``setup_error`` says why). ``killed_after_grace``: SIGKILL was needed
    because the process outlived its stop grace period; ``forced``: :meth:`ManagedProcess.kill`
    was called.
    """

    exit_code: int | None
    signal: int | None
    stopped_by_request: bool
    killed_after_grace: bool
    stderr_tail: list[str] = field(default_factory=list)
    setup_error: str | None = None
    duration_s: float = 0.0
    grace_s: float | None = None
    forced: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.setup_error is None

    @property
    def message(self) -> str:
        """One human line: the exit code or signal, decoded, and why it happened."""
        if self.setup_error is not None:
            return f"could not start: {self.setup_error}"
        if self.signal is not None:
            name = signal_name(self.signal)
            if self.forced:
                return f"killed by {name} (forced stop)"
            if self.killed_after_grace:
                grace = f" of {self.grace_s:g} s" if self.grace_s is not None else ""
                return f"killed by {name} after the stop grace period{grace} ran out"
            if self.stopped_by_request:
                return f"terminated by {name} after a stop request"
            return f"killed by {name}{_SIGNAL_HINTS.get(name, '')}"
        code = self.exit_code
        text = f"exited with code {code}"
        if code is not None and 128 < code < 128 + 65:
            # Shells report a child killed by signal N as 128+N.
            name = signal_name(code - 128)
            if name.startswith("SIG"):
                hint = _SIGNAL_HINTS.get(name, "")
                text += f" (128+{code - 128}: a shell reporting {name}{hint})"
        if self.stopped_by_request:
            text += " after a stop request"
        return text


class _StreamReader(threading.Thread):
    """Drains one pipe: log file, callback, and (for stderr) the tail of lines."""

    def __init__(self, stream: str, pipe: IO[bytes], log_path: Path | None,
                 on_output: OutputCallback | None, tail: collections.deque[str] | None) -> None:
        super().__init__(name=f"runyard-{stream}-reader", daemon=True)
        self.stream = stream
        self._pipe = pipe
        self._log_path = log_path
        self._on_output = on_output
        self._tail = tail
        self._partial = b""
        self._callback_failed = False
        self.bytes_read = 0

    def run(self) -> None:
        log_file = None
        try:
            if self._log_path is not None:
                log_file = open(self._log_path, "ab")  # closed in finally
            offset = log_file.tell() if log_file is not None else 0
            read = getattr(self._pipe, "read1", self._pipe.read)
            while True:
                data = read(CHUNK_BYTES)
                if not data:
                    break
                if log_file is not None:
                    log_file.write(data)
                    log_file.flush()
                self._deliver(offset, data)
                self._feed_tail(data)
                offset += len(data)
                self.bytes_read += len(data)
        except (OSError, ValueError) as exc:  # a closed pipe or a full disk must not hang us
            log.warning("%s reader stopped: %s", self.stream, exc)
        finally:
            self._flush_tail()
            if log_file is not None:
                log_file.close()
            self._pipe.close()

    def _deliver(self, offset: int, data: bytes) -> None:
        if self._on_output is None:
            return
        try:
            self._on_output(self.stream, offset, data)
        except Exception:
            # Keep draining the pipe whatever the callback does: a blocked pipe would
            # freeze the training process.
            if not self._callback_failed:
                log.exception("on_output callback failed for %s; logs are still written",
                              self.stream)
                self._callback_failed = True

    def _feed_tail(self, data: bytes) -> None:
        if self._tail is None:
            return
        *lines, partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._tail.append(_visible(line))
        # A progress bar rewrites one line with \r and never ends it: keep only what a
        # terminal would show, so memory stays bounded.
        if b"\r" in partial:
            partial = partial.rsplit(b"\r", 1)[1] or partial.rstrip(b"\r").rsplit(b"\r", 1)[-1]
        self._partial = partial[-TAIL_LINE_MAX * 4:]

    def _flush_tail(self) -> None:
        if self._tail is not None and self._partial.strip():
            self._tail.append(_visible(self._partial))
        self._partial = b""


def _visible(line: bytes) -> str:
    """What a terminal shows of one line: the last ``\\r``-separated part, decoded."""
    parts = [p for p in line.split(b"\r") if p]
    text = (parts[-1] if parts else b"").decode("utf-8", errors="replace")
    return text[:TAIL_LINE_MAX]


class ManagedProcess:
    """One supervised training process and its process group. Use :meth:`start`."""

    def __init__(self, launch: Launch, on_output: OutputCallback | None = None,
                 stderr_tail_lines: int = defaults.STDERR_TAIL_LINES) -> None:
        self.launch = launch
        self._on_output = on_output
        self._tail: collections.deque[str] = collections.deque(maxlen=max(stderr_tail_lines, 0))
        self._lock = threading.RLock()
        self._popen: subprocess.Popen[bytes] | None = None
        self._readers: list[_StreamReader] = []
        self._started_at = time.monotonic()
        self._result: ExitResult | None = None
        self._stop_requested = False
        self._grace_s: float | None = None
        self._kill_deadline: float | None = None
        self._killed_after_grace = False
        self._forced = False
        self._timer: threading.Timer | None = None
        log_dir = Path(launch.log_dir) if launch.log_dir is not None else None
        self.stdout_path = log_dir / STDOUT_LOG if log_dir is not None else None
        self.stderr_path = log_dir / STDERR_LOG if log_dir is not None else None

    @classmethod
    def start(cls, launch: Launch, on_output: OutputCallback | None = None, *,
              stderr_tail_lines: int = defaults.STDERR_TAIL_LINES) -> ManagedProcess:
        """Start ``launch``; when it cannot start, the result already holds ``setup_error``."""
        proc = cls(launch, on_output, stderr_tail_lines)
        error = proc._spawn()
        if error is not None:
            log.info("setup error for %r: %s", list(launch.argv)[:1], error)
            proc._result = ExitResult(exit_code=None, signal=None, stopped_by_request=False,
                                      killed_after_grace=False, setup_error=error,
                                      duration_s=time.monotonic() - proc._started_at)
        return proc

    # --- starting ---------------------------------------------------------------------------

    def _spawn(self) -> str | None:
        launch = self.launch
        argv = list(launch.argv) if not isinstance(launch.argv, str | bytes) else []
        if not argv or not all(isinstance(a, str) for a in argv):
            return f"command: expected a non-empty list of strings, got {launch.argv!r}"
        if launch.cwd is not None and not Path(launch.cwd).is_dir():
            return f"working directory {os.fspath(launch.cwd)!r} does not exist"
        if launch.log_dir is not None:
            try:
                Path(launch.log_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"cannot create log directory {os.fspath(launch.log_dir)!r}: {exc}"
        env = dict(os.environ) if launch.inherit_env else {}
        env.update(launch.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
            if launch.uid is not None:
                kwargs.update(user=launch.uid, group=launch.gid,
                              extra_groups=list(launch.groups or ()))
        try:
            self._popen = subprocess.Popen(  # argv list, no shell
                argv, cwd=launch.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
                **kwargs,  # type: ignore[call-overload]
            )
        except FileNotFoundError as exc:
            return f"command not found: {argv[0]!r} ({exc.strerror})"
        except PermissionError as exc:
            return f"permission denied running {argv[0]!r} ({exc.strerror})"
        except OSError as exc:
            return f"cannot run {argv[0]!r}: {exc.strerror or exc}"
        except (TypeError, ValueError) as exc:  # e.g. a non-string environment value
            return f"invalid command or environment: {exc}"
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._readers = [
            _StreamReader("stdout", self._popen.stdout, self.stdout_path, self._on_output, None),
            _StreamReader("stderr", self._popen.stderr, self.stderr_path, self._on_output,
                          self._tail),
        ]
        for reader in self._readers:
            reader.start()
        log.debug("started pid %s: %r", self._popen.pid, argv)
        return None

    # --- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def result(self) -> ExitResult | None:
        """The result once the process has ended and been collected (by poll/wait)."""
        return self._result

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def stderr_tail(self) -> list[str]:
        """The last stderr lines so far (a copy)."""
        return list(self._tail)

    # --- stopping ---------------------------------------------------------------------------

    def request_stop(self, grace_s: float = defaults.STOP_GRACE_S) -> None:
        """Create the stop file, SIGTERM the group, and SIGKILL it after ``grace_s``.

        A second request can only shorten the deadline. Does nothing once the process ended.
        """
        grace_s = max(float(grace_s), 0.0)
        with self._lock:
            if self._result is not None or self._popen is None or self._popen.poll() is not None:
                return
            deadline = time.monotonic() + grace_s
            if self._stop_requested:
                if self._kill_deadline is not None and deadline >= self._kill_deadline:
                    return
            else:
                self._stop_requested = True
                self._write_stop_file(grace_s)
                self._signal_group(signal.SIGTERM)
            self._grace_s = grace_s
            self._kill_deadline = deadline
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(grace_s, self.tick)
            self._timer.daemon = True
            self._timer.start()

    def _write_stop_file(self, grace_s: float) -> None:
        if self.launch.stop_file is None:
            return
        path = Path(self.launch.stop_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"requested_at": time.time(), "grace_s": grace_s}))
        except OSError as exc:  # the signal still goes out; the file is a courtesy
            log.warning("cannot create stop file %s: %s", path, exc)

    def tick(self) -> None:
        """SIGKILL the group if a stop's grace period has run out and it still runs."""
        with self._lock:
            if (self._result is None and self._popen is not None
                    and self._kill_deadline is not None and not self._killed_after_grace
                    and time.monotonic() >= self._kill_deadline
                    and self._popen.poll() is None):
                log.info("pid %s outlived its %.3g s stop grace period; killing its group",
                         self._popen.pid, self._grace_s or 0.0)
                self._killed_after_grace = True
                self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the group now (the second SIGTERM of a forced agent stop)."""
        with self._lock:
            if self._result is not None or self._popen is None or self._popen.poll() is not None:
                return
            self._stop_requested = True
            self._forced = True
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        assert self._popen is not None
        if sys.platform == "win32":
            if signum == signal.SIGTERM:
                self._popen.terminate()
            else:
                self._popen.kill()
            return
        try:
            # start_new_session made the child a group leader: its pid is the group id.
            os.killpg(self._popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

    # --- waiting ----------------------------------------------------------------------------

    def poll(self) -> ExitResult | None:
        """The result if the process has ended, else None. Enforces the stop deadline."""
        if self._result is not None:
            return self._result
        self.tick()
        assert self._popen is not None
        code = self._popen.poll()
        return None if code is None else self._finish(code)

    def wait(self, timeout: float | None = None) -> ExitResult | None:
        """Wait up to ``timeout`` seconds (None: forever); None if still running.

        Call it with the heartbeat interval as timeout and beat between calls (rq's
        ``monitor_work_horse``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self.poll()
            if result is not None:
                return result
            remaining = POLL_STEP_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            assert self._popen is not None
            try:
                self._popen.wait(timeout=min(POLL_STEP_S, remaining))
            except subprocess.TimeoutExpired:
                pass

    def _finish(self, code: int) -> ExitResult:
        with self._lock:
            if self._result is not None:
                return self._result
            ended_at = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
            # Whatever the training process left behind in its group (data-loader workers,
            # a backgrounded helper) ends with it. The leader was just reaped, but Linux does
            # not reuse a pid while a group of that id still has members, so this cannot hit
            # a stranger unless the group emptied and the pid was reused within microseconds.
            self._signal_group(signal.SIGKILL)
            join_deadline = time.monotonic() + READER_JOIN_S
            for reader in self._readers:
                reader.join(max(join_deadline - time.monotonic(), 0.0))
                if reader.is_alive():
                    log.warning("%s pipe still open %.0f s after exit (a detached process "
                                "holds it); giving up on the rest", reader.stream,
                                READER_JOIN_S)
            self._result = ExitResult(
                exit_code=code if code >= 0 else None,
                signal=-code if code < 0 else None,
                stopped_by_request=self._stop_requested,
                killed_after_grace=self._killed_after_grace,
                stderr_tail=list(self._tail),
                setup_error=None,
                duration_s=ended_at - self._started_at,
                grace_s=self._grace_s,
                forced=self._forced,
            )
            return self._result

    # --- context manager: never leave a process behind ----------------------------------------

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._result is None and self._popen is not None:
            self.kill()
            self.wait()


def start(launch: Launch, on_output: OutputCallback | None = None, *,
          stderr_tail_lines: int = defaults.STDERR_TAIL_LINES) -> ManagedProcess:
    """Shorthand for :meth:`ManagedProcess.start`."""
    return ManagedProcess.start(launch, on_output, stderr_tail_lines=stderr_tail_lines)
