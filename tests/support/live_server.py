"""A real ``runyard server`` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "ry_test_operator_token_0123456789abcdef"


#: Ports handed to servers come from below the kernel's ephemeral range (32768-60999 on Linux),
#: so no outgoing connection's source port can take one between the check and the server's bind,
#: and each pytest-xdist worker has its own band, so no two workers ever hand out the same port.
_PORT_BASE, _PORT_BAND = 10_000, 1_500
_next_port: list[int] = []


def _band() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3" under xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = _PORT_BASE + (index % 14) * _PORT_BAND
    return range(start, start + _PORT_BAND)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and no other test of this run is given."""
    band = _band()
    if not _next_port:
        # A random start, so that two test runs side by side on one machine rarely meet.
        _next_port.append(band.start + secrets.randbelow(len(band)))
    for _ in range(len(band)):
        port = _next_port[0]
        _next_port[0] = band.start + (port + 1 - band.start) % len(band)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (or still in TIME_WAIT): the next one
                continue
            return port
    raise RuntimeError(f"no free port in {band}")


class LiveServer:
    """Starts, stops and restarts one server process; ``url`` and ``admin_token`` for clients."""

    def __init__(self, data_dir: Path, db_url: str | None = None, *, stale_after_s: float = 120,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = ADMIN_TOKEN
        self.stale_after_s = stale_after_s
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    def start(self, timeout: float = 120.0) -> LiveServer:
        args = [sys.executable, "-m", "runyard", "server", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--stale-after-s", str(self.stale_after_s), *self.extra_args]
        if self.db_url:
            args += ["--db", self.db_url]
        env = {**os.environ, "RUNYARD_ADMIN_TOKEN": self.admin_token, **self.env}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # kept open for the process's life
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> LiveServer:
        self.stop()
        return self.start()

    def client(self, headers: dict[str, str] | None = None, timeout: float = 30
               ) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}
