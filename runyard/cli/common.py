"""What the commands share: exit codes, connection options, JSON output, formatting."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.progress_bar import ProgressBar
from rich.text import Text

from runyard import errors, local, models, nonfinite, timestamps
from runyard.client import Client, Progress, Run
from runyard.client.client import DEFAULT_SERVER

#: Exit codes (docs/cli.md).
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

ServerOpt = Annotated[str, typer.Option(
    "--server", envvar="RUNYARD_SERVER", show_default=True,
    help="Server URL (env RUNYARD_SERVER).")]
#: ``--server`` of the commands that only read runs: None when neither the option nor the
#: environment names one, so :func:`reading` may fall back to the local store.
ReadServerOpt = Annotated[str | None, typer.Option(
    "--server", envvar="RUNYARD_SERVER", show_default=DEFAULT_SERVER,
    help="Server URL (env RUNYARD_SERVER). None given and none running at the default: "
         "the data directory's local store, read-only.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="RUNYARD_TOKEN", show_default=False,
    help="API token (env RUNYARD_TOKEN; for a local server, the data dir's admin-token).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
RunArg = Annotated[str, typer.Argument(
    help="Run id (or its start), or run name: the newest run of that name.",
    show_default=False)]
ProjectOpt = Annotated[str | None, typer.Option(
    "--project", envvar="RUNYARD_PROJECT", show_default=False,
    help="Project of a RUN given by name (env RUNYARD_PROJECT).")]


def find(client: Client, ref: str, project: str | None = None) -> Run:
    """The run a RUN argument names (:func:`runyard.client.resolve.find_run`): every
    command resolves its RUN through here."""
    return client.find_run(ref, project=project)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print one clear line on stderr and return the Exit to raise."""
    typer.echo(f"runyard: {message}", err=True)
    return typer.Exit(code)


def statuses(values: list[str] | None) -> list[str] | None:
    """``--status a,b --status c`` -> checked list; an unknown status is a usage error."""
    if not values:
        return None
    out = [s.strip() for v in values for s in v.split(",") if s.strip()]
    for s in out:
        try:
            models.Status.parse(s)
        except errors.ValidationError as exc:
            raise fail(f"--status: {exc.message.removeprefix('status: ')}", EXIT_USAGE) from None
    return out


def parse_when(value: str | None, option: str) -> datetime | None:
    """A time option (ISO 8601 or UNIX seconds); a usage error names the option."""
    if value is None:
        return None
    try:
        seconds = timestamps.parse_time(value, option)
    except errors.ValidationError:
        raise fail(f"{option}: expected a time (ISO 8601 or UNIX seconds), got {value!r}",
                   EXIT_USAGE) from None
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def resolve_token(server: str, token: str | None) -> str | None:
    """The given token, else the local server's admin token file (only for a loopback URL)."""
    return token or local.local_token(server, local.data_dir())


@contextmanager
def connect(server: str | None, token: str | None) -> Iterator[Client]:
    """A :class:`Client` for the command; errors reach ``run_app`` as one line."""
    url = (server or DEFAULT_SERVER).rstrip("/")
    client = Client(url, resolve_token(url, token) or "")
    try:
        yield client
    finally:
        client.close()


@contextmanager
def reading(server: str | None, token: str | None) -> Iterator[Client]:
    """:func:`connect` for the commands that only read runs (their ``--server`` is
    :data:`ReadServerOpt`). When no server was named (``server`` None: no ``--server``, no
    ``RUNYARD_SERVER``) and none answers at the default address, they read the data
    directory's embedded store in this process instead, and say so on stderr: runs recorded
    in embedded mode need no server to be looked at. A server that was named and is not
    there stays an error: the command never quietly reads something else."""
    url = (server or DEFAULT_SERVER).rstrip("/")
    store = local.embedded_db_path(local.data_dir())
    if server or not store.is_file() or _listening(url):
        with connect(server, token) as client:
            yield client
        return
    from runyard.server import inprocess  # the server's stack: only on this path

    typer.echo(f"runyard: no server at {url}; reading the local store at {store}", err=True)
    client = inprocess.open_reader(store.parent)
    try:
        yield client
    finally:
        client.close()


#: Seconds to wait for the default server's port before reading the local store instead.
PROBE_TIMEOUT_S = 1.0


def _listening(url: str) -> bool:
    """Whether something accepts connections at the host and port of ``url``."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_json(value: Any) -> None:
    """One JSON document on stdout (NaN written as the protocol's strings)."""
    typer.echo(json.dumps(nonfinite.to_wire(value), default=_default, sort_keys=False))


# --------------------------------------------------------------------------- formatting


def iso(when: datetime | None) -> str | None:
    return None if when is None else timestamps.format_time(when)


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``4d02h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    return duration((now - when).total_seconds()) + " ago"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}"


def percent(progress: Progress | None) -> str:
    frac = progress.fraction if progress else None
    return "-" if frac is None else f"{frac * 100:.0f}%"


def steps(progress: Progress | None) -> str:
    if progress is None or progress.step is None:
        return "-"
    return f"{progress.step}/{progress.total_steps}" if progress.total_steps else str(progress.step)


def metric_items(progress: Progress | None) -> list[str]:
    """The snapshot's metrics as ``name=value`` items, ``loss`` first, then by name."""
    if progress is None or not progress.metrics:
        return []
    names = sorted(progress.metrics, key=lambda n: (n != "loss", n))
    return [f"{n}={number(progress.metrics[n])}" for n in names]


def key_metrics(progress: Progress | None, limit: int = 2) -> str:
    """The first few metrics of the snapshot, ``loss`` first when present."""
    return " ".join(metric_items(progress)[:limit]) or "-"


def status_text(run: Run) -> str:
    """The status with the stall marker and the termination reason of ended runs."""
    text = run.status or "-"
    if run.progress is not None and run.progress.stalled and not run.is_terminal:
        text += " (stalled)"
    if run.is_terminal and run.termination_reason and run.termination_reason != run.status:
        text += f" ({run.termination_reason})"
    return text


STATUS_STYLE = {"queued": "yellow", "claimed": "cyan", "running": "blue", "stopping": "magenta",
                "completed": "green", "failed": "red", "stopped": "magenta",
                "cancelled": "dim"}


def status_cell(run: Run) -> Text:
    """:func:`status_text` coloured by status, for a table cell."""
    return Text(status_text(run), style=STATUS_STYLE.get(run.status or "", ""))


def progress_bar(run: Run, width: int) -> ProgressBar:
    """The run's progress as a bar: full once completed, pulsing while running with no total."""
    p = run.progress
    frac = 1.0 if run.status == "completed" else (p.fraction if p else None)
    return ProgressBar(total=100.0, completed=(frac or 0.0) * 100, width=width,
                       pulse=frac is None and run.status == "running")
