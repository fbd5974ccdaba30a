"""One real ``python -m runyard up`` process for the end-to-end tests (no tests here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .live_server import free_port


class Up:
    """One ``python -m runyard up`` process; its stdout and stderr go to files."""

    def __init__(self, tmp_path: Path, data_dir: Path | None, *args: str,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.out = tmp_path / f"up-{self.port}.out"
        self.err = tmp_path / f"up-{self.port}.err"
        argv = [sys.executable, "-m", "runyard", "up", "--port", str(self.port),
                "--host-id", "laptop", "--stop-grace-s", "5", *args]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd,
                                         env={**clean, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "Ctrl-C stops both" not in self.stdout():
            assert self.proc.poll() is None, self.stderr()
            assert time.monotonic() < deadline, self.stdout() + self.stderr()
            time.sleep(0.1)

    def signin_link(self) -> str:
        """The one-time sign-in link the banner printed."""
        lines = self.stdout().splitlines()
        for i, line in enumerate(lines):
            if "open this link to sign the browser in" in line:
                return lines[i + 1].strip()
        raise AssertionError(f"no sign-in link in: {self.stdout()}")

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
