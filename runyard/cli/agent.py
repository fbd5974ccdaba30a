"""``runyard agent``: run the fleet worker daemon, self-test it, or install it as a service."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

import typer

from runyard import defaults, errors

agent_app = typer.Typer(
    help="The worker daemon: claims runs this host can serve and supervises them.",
    invoke_without_command=True,
)

_SERVER = typer.Option(None, "--server", envvar="RUNYARD_SERVER",
                       help="Server URL, e.g. http://10.0.0.1:8470.")
_TOKEN = typer.Option(None, "--token", envvar="RUNYARD_TOKEN", help="Worker token.")
_HOST_ID = typer.Option(None, "--host-id", envvar="RUNYARD_HOST_ID",
                        help="This host's id (default: its host name).")
_SLOTS = typer.Option(1, "--slots", envvar="RUNYARD_SLOTS", min=1,
                      help="Attempts run at once.")
_LABELS = typer.Option("", "--labels", envvar="RUNYARD_LABELS", help="k=v,k2=v2 labels.")
_WORK_DIR = typer.Option(None, "--work-dir", envvar="RUNYARD_WORK_DIR",
                         help="Where attempts' files go (default: ./runyard-work).")
_PROBE = typer.Option(defaults.PROBE_INTERVAL_S, "--probe-interval-s",
                      envvar="RUNYARD_PROBE_INTERVAL_S",
                      help="Seconds between progress probes when a run sets none.")
_EXECUTOR = typer.Option("local", "--executor", envvar="RUNYARD_EXECUTOR",
                         help="Where runs execute: local (processes on this host) or "
                              "slurm (batch jobs on a cluster); docs/executors.md.")
_TRAIN_AS = typer.Option(None, "--train-as", envvar="RUNYARD_TRAIN_AS",
                         help="Start runs as this OS user, so they cannot reach the agent's "
                              "token (the agent must run as root).")


def _server_or_fail(server: str | None) -> str:
    if not server:
        raise errors.ConfigError("server: give --server URL or set RUNYARD_SERVER",
                                 field="server")
    return server


@agent_app.callback()
def agent(
    ctx: typer.Context,
    server: str | None = _SERVER,
    token: str | None = _TOKEN,
    host_id: str | None = _HOST_ID,
    slots: int = _SLOTS,
    labels: str = _LABELS,
    work_dir: Path | None = _WORK_DIR,
    probe_interval_s: float = _PROBE,
    executor: str = _EXECUTOR,
    train_as: str | None = _TRAIN_AS,
    stop_grace_s: float = typer.Option(defaults.STOP_GRACE_S, "--stop-grace-s",
                                       envvar="RUNYARD_STOP_GRACE_S",
                                       help="Grace period of runs stopped by an agent stop."),
    sys_interval_s: float = typer.Option(10.0, "--sys-interval-s",
                                         envvar="RUNYARD_SYS_INTERVAL_S",
                                         help="Seconds between system metric samples of each "
                                              "run (sys/ tags); 0 turns them off."),
    claim_max_wait_s: float | None = typer.Option(
        None, "--claim-max-wait-s", envvar="RUNYARD_CLAIM_MAX_WAIT_S", show_default=False,
        help="Longest pause between claims when idle (default 5 s; 1 s for --executor "
             "slurm, whose one agent serves the whole cluster)."),
    check: bool = typer.Option(False, "--check",
                               help="Print the capability self-test and exit."),
    partition: str | None = typer.Option(None, "--partition", envvar="RUNYARD_SLURM_PARTITION",
                                         help="Slurm: the partition served (default: the "
                                              "cluster's default partition)."),
    account: str | None = typer.Option(None, "--account", envvar="RUNYARD_SLURM_ACCOUNT",
                                       help="Slurm: the account jobs are charged to, unless "
                                            "a run names one."),
    max_jobs: int | None = typer.Option(None, "--max-jobs", envvar="RUNYARD_MAX_JOBS", min=1,
                                        help="Slurm: most jobs in flight at once "
                                             "(default 100)."),
) -> None:
    """Claim runs this host can serve and supervise them until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    source = ctx.get_parameter_source("token")
    if source is not None and source.name == "COMMANDLINE":
        typer.echo("runyard: warning: --token on the command line is visible to every user "
                   "of this host (ps); set RUNYARD_TOKEN instead", err=True)
    from runyard.agent import capabilities

    parsed = capabilities.parse_labels(labels)
    from runyard.agent import daemon, isolation
    from runyard.agent import executor as executors

    executors.check_name(executor)
    if check and executor == "local":
        caps = capabilities.detect(host_id=host_id, labels=parsed, slots=slots,
                                   workdir=os.getcwd())
        typer.echo(capabilities.format_check(caps))
        raise typer.Exit(0)
    if check:
        # Another executor's self-test (a Slurm agent's partitions): it talks to its
        # cluster, not to the server.
        from runyard.agent.api import WorkerAPI

        config = daemon.AgentConfig(
            server=server or "http://127.0.0.1:8470", host_id=host_id, slots=slots,
            labels=parsed, work_dir=work_dir or Path("runyard-work"), executor=executor,
            slurm_partition=partition, slurm_account=account, max_jobs=max_jobs)
        api = WorkerAPI(config.server, None)
        try:
            chosen = executors.create(config, api)
            typer.echo(chosen.check_text())
        finally:
            api.close()
        # An executor that cannot work here (Slurm's tools missing or failing) fails the check.
        raise typer.Exit(1 if getattr(chosen, "problem", None) else 0)

    # Runs must not read the token from this process's /proc files, nor inherit it.
    isolation.make_undumpable()
    isolation.forget_token_env()
    if not os.environ.get("RUNYARD_LOG_LEVEL"):
        # The CLI logs warnings by default; an agent's claims and exits belong in its journal.
        logging.getLogger("runyard.agent").setLevel(logging.INFO)
    # One line per HTTP request (several a second per run) would drown the journal.
    logging.getLogger("httpx").setLevel(max(logging.getLogger().level, logging.WARNING))
    config = daemon.AgentConfig(
        server=_server_or_fail(server), token=token, host_id=host_id, slots=slots,
        labels=parsed, work_dir=work_dir or Path("runyard-work"),
        probe_interval_s=probe_interval_s, executor=executor, stop_grace_s=stop_grace_s,
        claim_max_wait_s=claim_max_wait_s, train_as=train_as, sys_interval_s=sys_interval_s,
        slurm_partition=partition, slurm_account=account, max_jobs=max_jobs)
    agent_ = daemon.Agent(config)
    # What is loaded by now lives as long as the agent: moved out of the collector's view,
    # so the collections that parsing a run's metric lines sets off do not walk it (as the
    # server does).
    gc.freeze()
    raise typer.Exit(agent_.run())


@agent_app.command("install")
def install(
    server: str | None = _SERVER,
    token: str | None = _TOKEN,
    host_id: str | None = _HOST_ID,
    slots: int | None = typer.Option(None, "--slots", envvar="RUNYARD_SLOTS", min=1),
    labels: str = _LABELS,
    work_dir: str | None = typer.Option(None, "--work-dir", envvar="RUNYARD_WORK_DIR"),
    probe_interval_s: float | None = typer.Option(None, "--probe-interval-s",
                                                  envvar="RUNYARD_PROBE_INTERVAL_S"),
    executor: str | None = typer.Option(None, "--executor", envvar="RUNYARD_EXECUTOR"),
    user: bool = typer.Option(False, "--user", help="A systemd --user unit."),
    windows: bool = typer.Option(False, "--windows",
                                 help="Render the Windows Scheduled Task script."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Print the files (token masked); write nothing."),
    service_name: str = typer.Option("runyard-agent", "--service-name"),
    run_as: str | None = typer.Option(None, "--run-as", help="User= of a system unit."),
    train_as: str | None = typer.Option(
        None, "--train-as", help="Start runs as this OS user (the agent stays root), so "
                                 "they cannot read its token."),
    grace_s: float = typer.Option(defaults.STOP_GRACE_S, "--grace-s",
                                  help="Stop grace period the service manager allows for."),
) -> None:
    """Install the agent as a service (systemd unit, or a Windows Scheduled Task)."""
    from runyard.agent import capabilities
    from runyard.agent import install as install_mod

    opts = install_mod.AgentOptions(
        server=_server_or_fail(server), token=token, host_id=host_id, slots=slots,
        labels=capabilities.parse_labels(labels),
        work_dir=str(Path(work_dir).resolve()) if work_dir else None,
        probe_interval_s=probe_interval_s, executor=executor, service_name=service_name,
        user_mode=user, run_as=run_as, train_as=train_as, grace_s=grace_s)
    install_mod.install(opts, target="windows" if windows else None, dry_run=dry_run,
                        echo=typer.echo)
