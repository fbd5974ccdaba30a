"""``runyard supervise``: supervise one attempt claimed elsewhere, or one node's share of it
(docs/executors.md, docs/cli.md). Executors start the same code as ``python -m
runyard.agent.supervise`` (:func:`runyard.agent.supervise.main`)."""

from __future__ import annotations

from pathlib import Path

import typer

from runyard import defaults


def supervise(
    command: list[str] | None = typer.Argument(
        None, help="With --task: the command to run (after --).", show_default=False),
    server: str | None = typer.Option(None, "--server", envvar="RUNYARD_SERVER",
                                      help="Server URL."),
    spec: Path | None = typer.Option(
        None, "--spec", help="The attempt's spec: the claim's answer as JSON, plus an "
                             "optional launch_prefix argv."),
    token_file: Path | None = typer.Option(
        None, "--token-file", envvar="RUNYARD_ATTEMPT_TOKEN_FILE",
        help="A file (mode 0600) holding the attempt's credential; default: "
             "RUNYARD_ATTEMPT_TOKEN. Never the worker token."),
    work_dir: Path = typer.Option(Path("runyard-work"), "--work-dir",
                                  help="Where the attempt's files go."),
    host_id: str | None = typer.Option(None, "--host-id",
                                       help="Host name in the report (default: the node's)."),
    probe_interval_s: float = typer.Option(defaults.PROBE_INTERVAL_S, "--probe-interval-s",
                                           help="Seconds between probes when the run sets "
                                                "none."),
    stop_grace_s: float = typer.Option(defaults.STOP_GRACE_S, "--stop-grace-s",
                                       help="Grace of a stop by SIGTERM to the supervisor."),
    on_signal: str = typer.Option("report", "--on-signal",
                                  help="On SIGTERM: stop the run and report worker_shutdown "
                                       "(report), or leave the report to the executor "
                                       "(leave)."),
    task: bool = typer.Option(False, "--task",
                              help="Run one node's share of a multi-node attempt: the "
                                   "command after --, lines prefixed by node and rank, "
                                   "SIGTERM as a stop with grace. No server."),
    rank_from_env: bool = typer.Option(False, "--rank-from-env",
                                       help="With --task: set RANK, LOCAL_RANK, WORLD_SIZE "
                                            "and NODE_RANK from SLURM_* when unset."),
) -> None:
    """Supervise one already-claimed attempt as the agent would, and report it (exit 0
    completed, 1 failed, 3 lease lost, 4 not reported); with --task, one node's command."""
    from runyard.agent import supervise as sup

    raise typer.Exit(sup.command(
        server=server, spec=spec, token_file=token_file, work_dir=work_dir, host_id=host_id,
        probe_interval_s=probe_interval_s, stop_grace_s=stop_grace_s, on_signal=on_signal,
        task=task, rank_from_env=rank_from_env, argv=command or ()))
