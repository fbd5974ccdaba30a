"""``runyard up``: the server and one local agent in one command, on the embedded SQLite."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runyard import defaults, errors

if TYPE_CHECKING:
    from runyard.agent.signals import StopSignals
    from runyard.cli.stack import LocalStack, StackConfig

#: Step of the supervising loop.
STEP_S = 0.2

#: What runs between the start and the stop: ``body(stack, stop_signals) -> exit code``.
Body = Callable[["LocalStack", "StopSignals"], int]

DATA_DIR_OPT = typer.Option(
    None, "--data-dir", envvar="RUNYARD_DATA_DIR", show_default=False,
    help="Database, artifacts, tokens and logs (default: $XDG_DATA_HOME/runyard or "
         "~/.runyard).")
PORT_OPT = typer.Option(defaults.PORT, "--port", envvar="RUNYARD_PORT", min=0, max=65535,
                        help="Port of the server on 127.0.0.1 (0: any free port).")
GRACE_OPT = typer.Option(defaults.STOP_GRACE_S, "--stop-grace-s", min=0,
                         envvar="RUNYARD_STOP_GRACE_S",
                         help="On Ctrl-C, seconds running runs get to stop before they are "
                              "killed (a second Ctrl-C kills them at once).")


def resolve_data_dir(data_dir: Path | None) -> Path:
    from runyard import local

    return (data_dir or local.data_dir()).expanduser().resolve()


def print_banner(local: LocalStack) -> None:
    cfg = local.config
    typer.echo(f"runyard: UI and API at {local.url}/")
    if local.signin_url is not None and local.signin_expires_at is not None:
        # The link is the one secret printed: it works once, and briefly (docs/security.md).
        until = time.strftime("%H:%M", time.localtime(local.signin_expires_at))
        typer.echo(f"runyard: open this link to sign the browser in (it works once, until "
                   f"{until}; `runyard token link` makes another):")
        typer.echo(f"    {local.signin_url}")
    if local.token_file is not None:
        typer.echo(f"runyard: the CLI here uses the operator token in {local.token_file}")
    else:
        typer.echo("runyard: operator token: the one given in RUNYARD_ADMIN_TOKEN")
    typer.echo(f"runyard: data in {cfg.data_dir} (SQLite runyard.db, artifacts/), logs in "
               f"{cfg.log_dir}")
    typer.echo(f"runyard: local agent with {cfg.slots} slot(s); runs' files in {cfg.work_dir}")


def wait_for_stop(local: LocalStack, stop: StopSignals) -> int:
    """Until Ctrl-C/SIGTERM: 0; or 1 when the server or the agent died on its own."""
    while not stop.graceful.is_set():
        problem = local.failed()
        if problem is not None:
            typer.echo(f"runyard: {problem}", err=True)
            return 1
        time.sleep(STEP_S)
    return 0


def run_stack(config: StackConfig, body: Body) -> int:
    """Start the stack, run ``body``, stop the stack whatever happened; the exit code.

    The stop handlers are in place before anything starts, so a Ctrl-C during the start
    still stops what was started.
    """
    from runyard.agent import signals
    from runyard.cli import stack

    with signals.on_stop() as stop:
        local = stack.LocalStack(config)
        try:
            local.start()
            code = 0 if stop.graceful.is_set() else body(local, stop)
        finally:
            if local.server is not None:
                if stop.graceful.is_set():
                    typer.echo(f"runyard: stopping: the agent first (its runs get up to "
                               f"{config.stop_grace_s:g} s; Ctrl-C again kills them now), "
                               "then the server", err=True)
                local.stop(force_requested=stop.force)
                typer.echo("runyard: stopped", err=True)
    return code


def stack_config(data_dir: Path | None, port: int, *, host_id: str | None = None,
                 slots: int = 1, labels: str = "",
                 stale_after_s: float = defaults.STALE_AFTER_S,
                 stop_grace_s: float = defaults.STOP_GRACE_S,
                 probe_interval_s: float = defaults.PROBE_INTERVAL_S,
                 tokens: dict[str, str] | None = None) -> StackConfig:
    """Checked options as a :class:`runyard.cli.stack.StackConfig`."""
    from runyard.agent import capabilities
    from runyard.cli import stack

    capabilities.parse_labels(labels)  # a bad label fails here, before anything starts
    if stale_after_s <= 0:
        raise errors.ConfigError("--stale-after-s: must be above 0", field="stale_after_s")
    return stack.StackConfig(
        data_dir=resolve_data_dir(data_dir), port=port, host_id=host_id, slots=slots,
        labels=labels, stale_after_s=stale_after_s, stop_grace_s=stop_grace_s,
        probe_interval_s=probe_interval_s, tokens=tokens or {})


def up(
    data_dir: Path | None = DATA_DIR_OPT,
    port: int = PORT_OPT,
    host_id: str | None = typer.Option(None, "--host-id", envvar="RUNYARD_HOST_ID",
                                       help="The local agent's host id (default: host name)."),
    slots: int = typer.Option(1, "--slots", envvar="RUNYARD_SLOTS", min=1,
                              help="Runs the local agent executes at once."),
    labels: str = typer.Option("", "--labels", envvar="RUNYARD_LABELS",
                               help="The local agent's labels, k=v,k2=v2."),
    stale_after_s: float = typer.Option(defaults.STALE_AFTER_S, "--stale-after-s",
                                        envvar="RUNYARD_STALE_AFTER_S",
                                        help="A lease with no heartbeat this long is lost."),
    stop_grace_s: float = GRACE_OPT,
) -> int:
    """Run the server and one local agent until Ctrl-C (or SIGTERM), then stop both.

    The server listens on 127.0.0.1 and keeps everything under the data directory: an
    embedded SQLite database, the artifacts, the operator token and the logs. The agent runs
    commands in the current directory. On Ctrl-C the agent stops its runs first (they are
    reported worker_shutdown and requeue for the next start), then the server stops.
    """
    config = stack_config(data_dir, port, host_id=host_id, slots=slots, labels=labels,
                          stale_after_s=stale_after_s, stop_grace_s=stop_grace_s)

    def body(local: LocalStack, stop: StopSignals) -> int:
        print_banner(local)
        typer.echo("runyard: Ctrl-C stops both")
        return wait_for_stop(local, stop)

    return run_stack(config, body)
