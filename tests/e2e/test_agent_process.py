"""The training-process supervisor and the stop-signal module, with real processes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runyard.agent import process, signals
from runyard.agent.process import ExitResult, Launch, ManagedProcess

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


class Collector:
    """Records on_output chunks and lets a test wait for a marker in stdout."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, stream: str, offset: int, data: bytes) -> None:
        with self._lock:
            self.chunks.append((stream, offset, data))

    def text(self, stream: str) -> bytes:
        with self._lock:
            return b"".join(d for s, _, d in self.chunks if s == stream)

    def wait_for(self, marker: bytes, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text("stdout"):
            if time.monotonic() > deadline:
                raise AssertionError(f"child never printed {marker!r}")
            time.sleep(0.01)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def wait_dead(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- output ---------------------------------------------------------------------------------


def test_both_streams_reach_files_callback_and_tail(tmp_path: Path) -> None:
    out = Collector()
    child = py("""
        import sys, time
        for i in range(5):
            print(f"out {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
            time.sleep(0.01)
    """)
    with ManagedProcess.start(Launch(child, log_dir=tmp_path / "logs"), out,
                              stderr_tail_lines=3) as proc:
        result = proc.wait(10)
    assert result is not None and result.succeeded
    assert result.exit_code == 0 and result.signal is None and result.setup_error is None
    assert result.stderr_tail == ["err 2", "err 3", "err 4"]
    assert "exited with code 0" == result.message
    for stream, word in (("stdout", "out"), ("stderr", "err")):
        chunks = [(o, d) for s, o, d in out.chunks if s == stream]
        assert len(chunks) >= 1
        expected = 0
        for offset, data in chunks:  # offsets are contiguous byte positions
            assert offset == expected
            expected += len(data)
        on_disk = (tmp_path / "logs" / f"{stream}.log").read_bytes()
        assert on_disk == out.text(stream)
        assert on_disk.decode().splitlines() == [f"{word} {i}" for i in range(5)]


def test_logs_append_and_offsets_continue_across_launches(tmp_path: Path) -> None:
    first, second = Collector(), Collector()
    for collector, word in ((first, "one"), (second, "two")):
        proc = ManagedProcess.start(Launch(py(f"print({word!r})"), log_dir=tmp_path), collector)
        assert proc.wait(10) is not None
    assert (tmp_path / "stdout.log").read_text() == "one\ntwo\n"
    assert second.chunks[0][:2] == ("stdout", len("one\n"))


def test_exit_code_is_kept_and_decoded(tmp_path: Path) -> None:
    proc = ManagedProcess.start(Launch(py("import sys; print('boom', file=sys.stderr); "
                                          "sys.exit(7)")))
    result = proc.wait(10)
    assert result is not None
    assert (result.exit_code, result.signal, result.succeeded) == (7, None, False)
    assert result.stderr_tail == ["boom"]
    assert result.message == "exited with code 7"
    assert not result.stopped_by_request and not result.killed_after_grace
    shell_kill = ManagedProcess.start(Launch(py("import sys; sys.exit(137)"))).wait(10)
    assert shell_kill is not None
    assert "128+9" in shell_kill.message and "SIGKILL" in shell_kill.message


def test_crash_by_signal_is_reported_as_signal() -> None:
    result = ManagedProcess.start(
        Launch(py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))).wait(10)
    assert result is not None
    assert result.exit_code is None and result.signal == signal.SIGSEGV
    assert result.message == "killed by SIGSEGV (segmentation fault)"


def test_progress_bar_carriage_returns_keep_what_a_terminal_shows() -> None:
    child = py(r"""
        import sys
        sys.stderr.write("loading\n10%\r50%\r100%\n")
        sys.stderr.write("step 1\rstep 2")
    """)
    result = ManagedProcess.start(Launch(child)).wait(10)
    assert result is not None
    assert result.stderr_tail == ["loading", "100%", "step 2"]


def test_failing_callback_never_blocks_the_child(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(stream: str, offset: int, data: bytes) -> None:
        calls.append(stream)
        raise RuntimeError("server down")

    # Far more than a pipe buffer: a reader stuck on the callback would deadlock the child.
    child = py("import sys; sys.stdout.write('x' * 300_000); sys.stdout.flush()")
    with caplog.at_level(logging.ERROR, logger="runyard.agent.process"):
        result = ManagedProcess.start(Launch(child, log_dir=tmp_path), broken).wait(20)
    assert result is not None and result.exit_code == 0
    assert (tmp_path / "stdout.log").stat().st_size == 300_000
    assert len(calls) >= 2
    assert sum("on_output callback failed" in r.message for r in caplog.records) == 1


def test_environment_is_laid_over_or_replaces_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_TEST_OUTER", "outer")
    code = ("import os; e = os.environ; "
            "print(e.get('RUNYARD_RUN_ID'), e.get('RUNYARD_TEST_OUTER'), "
            "e.get('PYTHONUNBUFFERED'))")
    for inherit, expected in ((True, b"r1 outer 1"), (False, b"r1 None 1")):
        out = Collector()
        proc = ManagedProcess.start(Launch(py(code), env={"RUNYARD_RUN_ID": "r1"},
                                           inherit_env=inherit), out)
        assert proc.wait(10) is not None
        assert out.text("stdout").strip() == expected


def test_wait_times_out_while_running_and_cwd_is_used(tmp_path: Path) -> None:
    out = Collector()
    # It runs until told to end (a file), so a paused machine cannot end it before the checks.
    proc = ManagedProcess.start(
        Launch(py("import os, time; print(os.getcwd(), flush=True)\n"
                  "while not os.path.exists('end'): time.sleep(0.01)"), cwd=tmp_path), out)
    started = time.monotonic()
    assert proc.wait(0.1) is None
    assert proc.poll() is None and proc.result is None
    assert time.monotonic() - started < 10  # the timeout was kept (loosely: a loaded machine)
    time.sleep(max(0.0, started + 0.5 - time.monotonic()))
    (tmp_path / "end").touch()
    result = proc.wait(30)
    assert result is not None and result.exit_code == 0 and proc.result is result
    assert result.duration_s >= 0.5
    assert Path(out.text("stdout").decode().strip()).resolve() == tmp_path.resolve()


# --- setup errors ---------------------------------------------------------------------------


def test_command_not_found_is_a_setup_error_not_an_exception(tmp_path: Path) -> None:
    proc = ManagedProcess.start(Launch(["runyard-no-such-command-xyz", "--flag"],
                                       log_dir=tmp_path))
    assert proc.pid is None
    result = proc.result
    assert result is not None and proc.wait(1) is result and proc.poll() is result
    assert result.exit_code is None and result.signal is None and not result.succeeded
    assert result.setup_error is not None
    assert "command not found: 'runyard-no-such-command-xyz'" in result.setup_error
    assert result.message.startswith("could not start: command not found")
    proc.request_stop(0.1)  # harmless on a process that never ran
    proc.kill()


def test_permission_denied_and_bad_inputs_are_setup_errors(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    if os.geteuid() != 0:  # root may execute anything
        denied = ManagedProcess.start(Launch([str(script)])).result
        assert denied is not None and denied.setup_error is not None
        assert "permission denied" in denied.setup_error
    # execve() of a directory fails with EACCES even for root.
    directory = ManagedProcess.start(Launch([str(tmp_path)])).result
    assert directory is not None and directory.setup_error is not None
    assert directory.setup_error.startswith(f"permission denied running {str(tmp_path)!r}")
    missing_cwd = ManagedProcess.start(Launch(["true"], cwd=tmp_path / "nope")).result
    assert missing_cwd is not None and missing_cwd.setup_error is not None
    assert "working directory" in missing_cwd.setup_error and "nope" in missing_cwd.setup_error
    for argv in ([], "python train.py", ["python", 3]):
        bad = ManagedProcess.start(Launch(argv)).result  # type: ignore[arg-type]
        assert bad is not None and bad.setup_error is not None
        assert bad.setup_error.startswith("command: expected a non-empty list of strings")
    bad_env = ManagedProcess.start(Launch(["true"], env={"X": 1})).result  # type: ignore[dict-item]
    assert bad_env is not None and bad_env.setup_error is not None


# --- stopping -------------------------------------------------------------------------------

GRACEFUL_CHILD = """
    import os, signal, sys, time
    def on_term(signum, frame):
        print("stop file:", os.path.exists(os.environ["RUNYARD_STOP_FILE"]), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    time.sleep(30)
"""


def test_sigterm_handled_child_is_stopped_not_killed(tmp_path: Path) -> None:
    stop_file = tmp_path / "control" / "stop"
    out = Collector()
    proc = ManagedProcess.start(Launch(py(GRACEFUL_CHILD), env={"RUNYARD_STOP_FILE":
                                                                str(stop_file)},
                                       stop_file=stop_file), out)
    out.wait_for(b"ready")
    proc.request_stop(5)
    assert proc.stop_requested
    result = proc.wait(10)
    assert result is not None
    assert result.exit_code == 0 and result.signal is None
    assert result.stopped_by_request and not result.killed_after_grace and not result.forced
    assert result.duration_s < 5
    assert stop_file.exists()  # created before the SIGTERM, as docs/progress-protocol.md says
    assert b"stop file: True" in out.text("stdout")
    assert result.message == "exited with code 0 after a stop request"


def test_child_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    out = Collector()
    child = py("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
    """)
    proc = ManagedProcess.start(Launch(child, stop_file=tmp_path / "stop"), out)
    out.wait_for(b"ready")
    asked = time.monotonic()
    proc.request_stop(0.5)
    result = proc.wait(30)
    waited = time.monotonic() - asked
    assert result is not None
    assert 0.45 <= waited < 25  # after the grace period (the upper bound loose: a loaded machine)
    assert result.signal == signal.SIGKILL and result.exit_code is None
    assert result.stopped_by_request and result.killed_after_grace and not result.forced
    assert result.message == "killed by SIGKILL after the stop grace period of 0.5 s ran out"


def test_grace_timer_kills_even_if_nobody_polls() -> None:
    out = Collector()
    proc = ManagedProcess.start(Launch(["sh", "-c", "trap '' TERM; echo ready; sleep 30"]), out)
    out.wait_for(b"ready")
    assert proc.pid is not None
    proc.request_stop(0.3)
    assert wait_dead(proc.pid)  # no poll()/wait()/tick() call in between
    result = proc.poll()
    assert result is not None and result.killed_after_grace


def test_a_second_request_can_only_shorten_the_deadline() -> None:
    out = Collector()
    proc = ManagedProcess.start(Launch(["sh", "-c", "trap '' TERM; echo ready; sleep 30"]), out)
    out.wait_for(b"ready")
    proc.request_stop(60)
    proc.request_stop(120)  # ignored: later than the first
    assert proc.wait(0.3) is None
    proc.request_stop(0.1)
    result = proc.wait(30)
    assert result is not None and result.killed_after_grace and result.grace_s == 0.1


def test_kill_is_immediate_and_marked_forced() -> None:
    out = Collector()
    proc = ManagedProcess.start(Launch(["sh", "-c", "trap '' TERM; echo ready; sleep 30"]), out)
    out.wait_for(b"ready")
    proc.kill()
    result = proc.wait(30)
    assert result is not None and result.signal == signal.SIGKILL
    assert result.forced and result.stopped_by_request and not result.killed_after_grace
    assert result.message == "killed by SIGKILL (forced stop)"


GRANDCHILD_PARENT = """
    import signal, subprocess, sys, time
    grandchild = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
    print("grandchild", grandchild.pid, flush=True)
    {then}
"""


def _grandchild_pid(out: Collector) -> int:
    out.wait_for(b"\n")
    line = out.text("stdout").decode().split("\n")[0]
    return int(line.split()[1])


@pytest.mark.parametrize("case", ["stop", "stop-ignored", "exit"])
def test_grandchildren_die_with_the_group(case: str, tmp_path: Path) -> None:
    ignore = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    grandchild = (ignore if case == "stop-ignored" else "") + "import time; time.sleep(60)"
    # "exit": the training process crashes and leaves its helper running.
    then = "sys.exit(3)" if case == "exit" else "time.sleep(30)"
    out = Collector()
    proc = ManagedProcess.start(
        Launch(py(GRANDCHILD_PARENT.format(grandchild=grandchild, then=then))), out)
    gpid = _grandchild_pid(out)
    assert alive(gpid)
    if case != "exit":
        proc.request_stop(2)
    result = proc.wait(10)
    assert result is not None
    assert wait_dead(gpid), f"grandchild {gpid} survived ({case})"
    if case == "exit":
        assert result.exit_code == 3
    else:
        assert result.signal == signal.SIGTERM and not result.killed_after_grace


def test_request_stop_after_exit_does_nothing(tmp_path: Path) -> None:
    proc = ManagedProcess.start(Launch(["true"], stop_file=tmp_path / "stop"))
    result = proc.wait(30)
    proc.request_stop(0.1)
    proc.kill()
    assert proc.result is result and result is not None and not result.stopped_by_request
    assert not (tmp_path / "stop").exists()


def test_exit_result_messages() -> None:
    crashed = ExitResult(exit_code=None, signal=9, stopped_by_request=False,
                         killed_after_grace=False)
    assert crashed.message == "killed by SIGKILL (often the kernel's out-of-memory killer)"
    stopped = ExitResult(exit_code=None, signal=15, stopped_by_request=True,
                         killed_after_grace=False)
    assert stopped.message == "terminated by SIGTERM after a stop request"
    assert process.signal_name(200) == "signal 200"
    assert ExitResult(exit_code=1, signal=None, stopped_by_request=False,
                      killed_after_grace=False).message == "exited with code 1"


# --- signals.on_stop ------------------------------------------------------------------------


def test_on_stop_first_signal_graceful_second_forces_then_restores() -> None:
    before = signal.getsignal(signal.SIGTERM)
    given = signals.StopSignals()
    with signals.on_stop(state=given) as stop:
        assert stop is given and stop.installed
        assert not stop.graceful and not stop.force and stop.first_at is None
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.graceful.wait(30)
        first = stop.first_at
        assert first is not None and sent <= first <= time.monotonic()
        assert not stop.force.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.force.wait(30)
        assert stop.count == 2 and stop.last_signal == signal.SIGTERM
        assert stop.first_at == first  # the first signal's time, kept
    assert signal.getsignal(signal.SIGTERM) is before


def test_on_stop_handles_sigint_instead_of_keyboard_interrupt() -> None:
    before = signal.getsignal(signal.SIGINT)
    with signals.on_stop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.graceful.wait(30) and stop.last_signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


def test_on_stop_does_nothing_off_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def body() -> None:
        with signals.on_stop() as stop:
            seen.append(stop.installed)
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    assert seen == [False, before]


def test_stop_flag_wait_times_out_and_sees_a_set_from_another_thread() -> None:
    flag = signals.StopFlag()
    started = time.monotonic()
    assert flag.wait(0.1) is False
    assert time.monotonic() - started < 10  # the timeout was kept (loosely: a loaded machine)
    threading.Timer(0.1, flag.set).start()
    assert flag.wait(30) is True


def test_on_stop_in_a_real_process_signalled_twice(tmp_path: Path) -> None:
    child = textwrap.dedent("""
        from runyard.agent import signals
        with signals.on_stop() as stop:
            print("ready", flush=True)
            print("graceful", stop.graceful.wait(10), flush=True)
            print("force", stop.force.wait(10), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "graceful True\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "force True\n"
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
