"""A server and one local agent under one supervisor: what ``runyard up`` runs.

Both are child processes (``python -m runyard server`` and ``python -m runyard agent``, which
end with the supervisor through :mod:`runyard.cli.parentwatch`), each in its own session so
that a Ctrl-C in the terminal reaches only the supervisor, which then stops them in order: the
agent first, so it can report its runs ``worker_shutdown`` (they requeue) while the server
still answers, then the server.
Child processes keep a crash of one from taking the other down, and give the agent the same
life as on any fleet host.

The database is the embedded SQLite under the data directory. Before the server starts, the
supervisor opens it once (migrating it), creates the operator token on a first start, mints
a fresh worker token for the agent (the old one is revoked), which reaches the agent only
through its environment, never its command line, and makes a one-time sign-in link for the
browser (:mod:`runyard.server.signin`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from runyard import defaults, errors, local
from runyard.cli.parentwatch import PARENT_ENV

log = logging.getLogger(__name__)

#: The local agent's worker token (revoked and minted again on every start).
AGENT_TOKEN_NAME = "local-agent"
#: Seconds the server gets to answer ``/v1/health`` after it was started.
START_TIMEOUT_S = 60.0
#: Seconds past its stop grace period the agent gets to report before a forcing signal.
AGENT_REPORT_S = 15.0
#: Seconds the server gets to stop before SIGKILL.
SERVER_STOP_S = 15.0
#: Lines of a child's log shown when it dies.
LOG_TAIL_LINES = 15
#: Variables the children must not take from the supervisor's environment: the supervisor
#: passes what they need as options (an inherited RUNYARD_DB would move the "embedded" store).
CHILD_ENV_DROP = ("RUNYARD_DB", "RUNYARD_ARTIFACTS", "RUNYARD_SERVER", "RUNYARD_TOKEN",
                  "RUNYARD_HOST", "RUNYARD_PORT", "RUNYARD_NO_AUTH", "RUNYARD_INSECURE",
                  "RUNYARD_WORK_DIR", "RUNYARD_HOST_ID", "RUNYARD_SLOTS", "RUNYARD_LABELS",
                  "RUNYARD_EXECUTOR", "RUNYARD_TLS_CERT", "RUNYARD_TLS_KEY")


@dataclass(frozen=True)
class StackConfig:
    """The options of ``runyard up``."""

    data_dir: Path
    host: str = defaults.HOST
    port: int = defaults.PORT
    host_id: str | None = None
    slots: int = 1
    labels: str = ""
    stale_after_s: float = defaults.STALE_AFTER_S
    probe_interval_s: float = defaults.PROBE_INTERVAL_S
    stop_grace_s: float = defaults.STOP_GRACE_S
    #: Extra tokens to mint for the caller, ``{name: role}`` (the demo's operator token).
    tokens: Mapping[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        from runyard.store import default_url

        return default_url(self.data_dir)

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"


def check_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` (0: a free one, chosen now); else ConfigError."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # As uvicorn binds: a port in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise errors.ConfigError(
                    f"port {port} on {host} is already in use (another `runyard up` or "
                    "server?); stop it or choose another port with --port",
                    field="port") from None
            raise errors.ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                     field="port") from None
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Child:
    """One supervised child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path
                 ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # closed in close()
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        self.proc = subprocess.Popen(  # argv list, no shell
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=dict(env), **kwargs)  # type: ignore[call-overload]

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def poll(self) -> int | None:
        code: int | None = self.proc.poll()
        return code

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        try:
            code: int = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return code

    def kill(self) -> None:
        self.signal(signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
        self.proc.wait()

    def tail(self) -> str:
        return _tail(self.log_path)

    def close(self) -> None:
        self._log.close()


class LocalStack:
    """Start with :meth:`start`, watch with :meth:`failed`, end with :meth:`stop`."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.port = config.port
        self.server: Child | None = None
        self.agent: Child | None = None
        #: Where the operator token is (None when it came from RUNYARD_ADMIN_TOKEN).
        self.token_file: Path | None = None
        #: Secrets of ``config.tokens``, by name.
        self.secrets: dict[str, str] = {}
        #: The one-time link that signs a browser in as an operator, and when it expires.
        self.signin_url: str | None = None
        self.signin_expires_at: float | None = None

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    # --- starting ---------------------------------------------------------------------------

    def prepare(self) -> str:
        """Migrate the database, make sure an operator token exists, mint the agent's token.

        Returns the agent's secret.
        """
        from runyard.server import auth, signin
        from runyard.store import open_store

        cfg = self.config
        local.ensure_data_dir(cfg.data_dir)
        store = open_store(cfg.db_url)
        try:
            created = auth.bootstrap_admin(store, cfg.data_dir,
                                           os.environ.get("RUNYARD_ADMIN_TOKEN") or None)
            existing = local.admin_token_path(cfg.data_dir)
            self.token_file = created or (existing if existing.is_file() else None)
            secrets = {}
            for name, role in {AGENT_TOKEN_NAME: "worker", **cfg.tokens}.items():
                store.revoke_token(name)
                _, secrets[name] = auth.create_token(store, name, role)
            code = signin.mint(store, auth.ADMIN_NAME, "operator")
            self.signin_url = signin.link(self.url, code.secret)
            self.signin_expires_at = code.expires_at
        finally:
            store.close()
        agent_secret = secrets.pop(AGENT_TOKEN_NAME)
        self.secrets = secrets
        return agent_secret

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
        env[PARENT_ENV] = str(os.getpid())
        env.update(extra)
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server, wait until it answers, then start the agent."""
        cfg = self.config
        self.port = check_port(cfg.host, cfg.port)
        agent_secret = self.prepare()
        child = [sys.executable, "-m", "runyard"]
        self.server = Child("server", [
            *child, "server", "--host", cfg.host, "--port", str(self.port),
            "--data-dir", str(cfg.data_dir), "--db", cfg.db_url,
            "--artifacts", str(cfg.data_dir / "artifacts"),
            "--stale-after-s", f"{cfg.stale_after_s:g}"],
            self._env(), cfg.log_dir / "server.log")
        self._wait_healthy(timeout)
        agent_args = [
            *child, "agent", "--server", self.url, "--slots", str(cfg.slots),
            "--work-dir", str(cfg.work_dir), "--probe-interval-s", f"{cfg.probe_interval_s:g}",
            "--stop-grace-s", f"{cfg.stop_grace_s:g}"]
        if cfg.host_id:
            agent_args += ["--host-id", cfg.host_id]
        if cfg.labels:
            agent_args += ["--labels", cfg.labels]
        self.agent = Child("agent", agent_args, self._env(RUNYARD_TOKEN=agent_secret),
                           cfg.log_dir / "agent.log")

    def _wait_healthy(self, timeout: float) -> None:
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.server.poll()
            if code is not None:
                raise errors.ConfigError(self._died(self.server, code))
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.server.kill()
        raise errors.ConfigError(f"the server did not answer on {self.url} within "
                                 f"{timeout:g} s; see {self.server.log_path}")

    # --- watching ---------------------------------------------------------------------------

    @staticmethod
    def _died(child: Child, code: int) -> str:
        tail = child.tail()
        text = f"the {child.name} exited unexpectedly (exit code {code}); see {child.log_path}"
        return text + (f"; its last lines:\n{tail}" if tail else "")

    def failed(self) -> str | None:
        """None while both children run; otherwise what happened to the one that ended."""
        for child in (self.server, self.agent):
            if child is not None:
                code = child.poll()
                if code is not None:
                    return self._died(child, code)
        return None

    # --- stopping ---------------------------------------------------------------------------

    def stop(self, force_requested: object = None) -> None:
        """Stop the agent (its runs get their grace period), then the server.

        ``force_requested`` is polled (anything with ``is_set()``): once set, the agent gets
        its second signal and stops its runs at once.
        """
        def forced() -> bool:
            is_set = getattr(force_requested, "is_set", None)
            return bool(is_set()) if callable(is_set) else False

        agent, server = self.agent, self.server
        try:
            if agent is not None and agent.poll() is None:
                agent.signal(signal.SIGTERM)
                deadline = time.monotonic() + self.config.stop_grace_s + AGENT_REPORT_S
                second_sent = False
                while agent.wait(0.1) is None:
                    if not second_sent and (forced() or time.monotonic() > deadline):
                        agent.signal(signal.SIGTERM)  # the agent's second signal: force
                        second_sent = True
                        deadline = time.monotonic() + AGENT_REPORT_S
                    elif second_sent and time.monotonic() > deadline:
                        log.warning("the agent did not stop; killing it")
                        agent.kill()
            if server is not None and server.poll() is None:
                server.signal(signal.SIGTERM)
                if server.wait(SERVER_STOP_S) is None:
                    log.warning("the server did not stop in %.0f s; killing it", SERVER_STOP_S)
                    server.kill()
        finally:
            for child in (agent, server):
                if child is not None:
                    if child.poll() is None:
                        child.kill()
                    child.close()
