"""``runyard demo``: ``runyard up`` plus real training jobs, watched live in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runyard import errors
from runyard.cli import up as up_cmd

if TYPE_CHECKING:
    from runyard.agent.signals import StopSignals
    from runyard.cli.stack import LocalStack

#: The demo's operator token (minted on every start, like the agent's): it reloads the
#: manifest and restarts runs, and is the actor of those events.
DEMO_TOKEN = "demo"
#: Exit code of a demo stopped by Ctrl-C (as a shell reports SIGINT).
EXIT_INTERRUPTED = 130


def demo(
    data_dir: Path | None = up_cmd.DATA_DIR_OPT,
    port: int = up_cmd.PORT_OPT,
    slots: int = typer.Option(2, "--slots", min=1,
                              help="Jobs trained at once by the local agent."),
    keep_running: bool = typer.Option(
        False, "--keep-running",
        help="When the jobs are done, leave the server and agent up (for the UI, "
             "`runyard ls`, ...) until Ctrl-C."),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1,
                                    help="Give up when the jobs have not ended by then."),
    stop_grace_s: float = typer.Option(10.0, "--stop-grace-s", min=0,
                                       help="On Ctrl-C, seconds running jobs get to stop."),
) -> int:
    """Run `runyard up` plus real training jobs with live progress, then list artifacts.

    The jobs train gradient-boosted trees, an MLP and a NumPy softmax regression on data sets
    that ship with scikit-learn (nothing is downloaded); one of them is stopped by a plateau
    rule when its validation loss stops improving.

    Exit code 0 when every job completed or was stopped by its rule. Jobs an earlier demo in
    the same data directory ran are trained again, as new runs.
    """
    import importlib.util

    for module, package in (("numpy", "NumPy"), ("sklearn", "scikit-learn")):
        if importlib.util.find_spec(module) is None:  # looked up, not imported: it is slow
            raise errors.ConfigError(f"the demo needs {package}, which is not installed: "
                                     "pip install 'runyard[server,demo]'")
    config = up_cmd.stack_config(data_dir, port, slots=slots, stop_grace_s=stop_grace_s,
                                 probe_interval_s=0.5, tokens={DEMO_TOKEN: "operator"})

    def body(local: LocalStack, stop: StopSignals) -> int:
        code = _train(local, stop, timeout_s)
        if keep_running and code == 0 and not stop.graceful.is_set():
            typer.echo(f"runyard: the server keeps running at {local.url}/ ; Ctrl-C stops it")
            if local.token_file is not None:
                typer.echo(f"runyard: try  RUNYARD_SERVER={local.url} RUNYARD_TOKEN=$(cat "
                           f"{local.token_file}) runyard ls")
            return up_cmd.wait_for_stop(local, stop)
        return code

    return up_cmd.run_stack(config, body)


def _train(local: LocalStack, stop: StopSignals, timeout_s: float) -> int:
    from rich.console import Console

    from runyard.cli import demo_board, demo_jobs
    from runyard.client import Client

    up_cmd.print_banner(local)
    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: no width to fit, keep the rows whole
        console = Console(highlight=False, width=max(console.width, 150))
    token = local.secrets[DEMO_TOKEN]
    with Client(local.url, token) as client:
        queued = demo_jobs.queue(client, token)
        again = f" ({queued.again} of them again, as new runs)" if queued.again else ""
        typer.echo(f"runyard: {len(queued.runs)} demo jobs queued{again}")
        view = demo_board.Board(client, queued.runs, console,
                                title=f"runyard demo: {len(queued.runs)} jobs on {local.url}/")
        outcome, problem = view.watch(stop.graceful.is_set, local.failed, timeout_s)
        if outcome is demo_board.Outcome.BROKEN:
            typer.echo(f"runyard: {problem}", err=True)
            return 1
        if outcome is demo_board.Outcome.INTERRUPTED:
            typer.echo("runyard: demo interrupted", err=True)
            return EXIT_INTERRUPTED
        console.print()
        console.print(view.artifacts(local.config.data_dir / "artifacts"))
        if outcome is demo_board.Outcome.TIMED_OUT:
            typer.echo(f"runyard: the demo jobs did not end within {timeout_s:g} s", err=True)
            return 1
        stops = view.rule_stops()
        for line in stops:
            typer.echo(f"runyard: {line}")
        failed = view.failures()
        for line in failed:
            typer.echo(f"runyard: {line}", err=True)
        if failed:
            return 1
    done = f"all {len(queued.runs)} demo jobs completed"
    if stops:
        done = (f"all {len(queued.runs)} demo jobs done: {len(queued.runs) - len(stops)} "
                f"completed, {len(stops)} stopped by {'its rule' if len(stops) == 1 else 'rules'}")
    typer.echo(f"runyard: {done} (`runyard up` on the same data directory shows them in the "
               "UI)")
    return 0
