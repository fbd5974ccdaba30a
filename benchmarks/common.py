"""The benchmarks' shared plumbing: the operator token, ports, a ``runyard server`` process
and its health wait, timing helpers, bulk-inserted run rows and throwaway PostgreSQL databases.

The scripts run as ``python benchmarks/NAME.py``, which puts this directory first on
``sys.path``: they import this module as ``common``. Nothing here measures anything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import sqlalchemy as sa

#: The admin token every benchmark server starts with.
TOKEN = "ry_bench_operator_token_0123456789abcdef"
#: PostgreSQL admin URL when ``RUNYARD_BENCH_PG`` is not set.
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Run rows per INSERT statement when seeding a store.
INSERT_CHUNK = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, timeout: float = 300, token: str = TOKEN) -> httpx.Client:
    """An HTTP client for ``url`` that authenticates as ``token`` (the operator by default)."""
    return httpx.Client(base_url=url, timeout=timeout,
                        headers={"Authorization": f"Bearer {token}"})


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120,
                 hint: str = "") -> None:
    """Return once GET ``url`` answers 200; raise if ``proc`` exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}{hint}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s{hint}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate ``proc`` and wait for it; kill it if it outlives ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    """``python -m runyard server`` on a free port of 127.0.0.1 with :data:`TOKEN` as its admin
    token, answering ``/v1/health`` once constructed; ``http`` is an operator client.

    ``db`` is the database URL: ``--db`` when given, else the embedded SQLite file under
    ``data_dir``. The server's output goes to ``log`` (stdout and stderr), else nowhere.
    """

    def __init__(self, data_dir: Path, *extra: str, db: str | None = None,
                 env: Mapping[str, str] | None = None, log: IO[bytes] | None = None,
                 http_timeout: float = 300) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.db = db or f"sqlite:///{data_dir / 'runyard.db'}"
        args = [sys.executable, "-m", "runyard", "server", "--port", str(port),
                "--data-dir", str(data_dir)]
        if db:
            args += ["--db", db]
        self.proc = subprocess.Popen(
            [*args, *extra], env={**(os.environ if env is None else env),
                                  "RUNYARD_ADMIN_TOKEN": TOKEN},
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
        try:
            wait_healthy(f"{self.url}/v1/health", self.proc,
                         hint=f" (log: {log.name})" if log else "")
        except BaseException:
            stop(self.proc)
            raise
        self.http = self.client(http_timeout)

    def client(self, timeout: float = 300) -> httpx.Client:
        return client(self.url, timeout)

    def local_run(self, name: str, rules: list[dict[str, Any]] | None = None
                  ) -> tuple[str, str, str]:
        """A run of the ``local`` executor: its id, its attempt's id and the attempt's lease."""
        body: dict[str, Any] = {"name": name, "executor": "local"}
        if rules:
            body["rules"] = rules
        r = self.http.post("/v1/runs", json=body)
        r.raise_for_status()
        out = r.json()
        return out["run"]["id"], out["attempt"]["id"], out["lease"]

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


def times_ms(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return times


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    return round(statistics.median(times_ms(fn, repeat)), 2)


def percentile(values: Sequence[float], q: float) -> float:
    """The value at rank ``q * (n - 1)``, rounded to the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def insert_runs(engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    """Bulk-insert run rows (``submission.build_run``'s) in one transaction: seeding a store
    is never what a benchmark measures."""
    from runyard.store import schema

    with engine.begin() as conn:
        for i in range(0, len(rows), INSERT_CHUNK):
            conn.execute(schema.runs.insert(), rows[i:i + INSERT_CHUNK])


def pg_admin_url() -> str:
    return os.environ.get("RUNYARD_BENCH_PG", PG_DEFAULT)


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database on ``admin_url``'s server, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"runyard_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
