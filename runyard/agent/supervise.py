"""``runyard supervise``: the agent's supervision of one attempt, in a process of its own, for
an attempt claimed elsewhere (docs/executors.md).

An executor that runs attempts away from its agent (the Slurm executor: inside the job's
allocation) claims a run, writes the claim's answer to a file (the *spec*: run, attempt,
lease, command, env, config...) and starts ``runyard supervise --spec FILE`` where the run
executes, with the attempt's own credential (``RUNYARD_ATTEMPT_TOKEN`` or a 0600 file; never
the worker token, never on a command line). It runs the same
:class:`~runyard.agent.attempt.AttemptRunner` the local agent runs on a thread: protocol
files, probe, metrics stream, logs, checkpoints, artifacts, stop file and grace, heartbeats,
spooling while the server is away, and the ``complete``/``fail`` report.

Several nodes: the spec's ``launch_prefix`` (an argv, such as ``["srun", ...,
"runyard", "supervise", "--task", "--rank-from-env", "--"]``) goes before the run's command,
so one supervisor (on the allocation's first node, where rank 0 runs) reports for the whole
attempt while the launcher starts the command on every node. Each node's command then runs
under ``runyard supervise --task`` (:func:`run_task`): it sets the rank variables, prefixes
every output line with its node and rank (the launcher carries them back into the one
supervisor's logs), and turns the SIGTERM the launcher forwards into the stop file and a stop
with grace, so every rank sees a stop request.

Start-up: in a job, the time from its start to the training command's is the supervisor's
own start, so an executor starts it as ``python -m runyard.agent.supervise`` (:func:`main`:
the options, messages and exit codes of ``runyard supervise``, parsed with argparse), not
through the ``runyard`` command, which imports Typer, Rich and every command's module first.
Before the launch only what launching needs is imported: the HTTP client (httpx, and its TLS
context) is built by the first request (:class:`~runyard.agent.api.WorkerAPI`), the heartbeat
sent right after the launch that marks the run running, before the system metric sampler
(psutil) starts; the uploads' archive support (zstandard) is imported where it is first used;
the command's placeholders are filled by :mod:`runyard.placeholders`, without the manifest
parser and its JSON Schema library. The figures are in benchmarks/README.md
(``slurm_bench``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from runyard import defaults, errors
from runyard.agent import process, signals
from runyard.agent.api import WorkerAPI
from runyard.agent.assignment import Assignment, AttemptSettings
from runyard.agent.attempt import AttemptRunner, Outcome

log = logging.getLogger(__name__)

TOKEN_ENV = "RUNYARD_ATTEMPT_TOKEN"
TOKEN_FILE_ENV = "RUNYARD_ATTEMPT_TOKEN_FILE"
#: ``runyard supervise`` exit codes, by how the attempt was reported.
EXIT_CODES = {Outcome.COMPLETED: 0, Outcome.FAILED: 1, Outcome.ABANDONED: 3,
              Outcome.UNREPORTED: 4}
#: Rank variables ``--rank-from-env`` sets from Slurm's, unless already set.
#: What a supervisor under ``--on-signal leave`` writes into the attempt's directory (JSON)
#: when it reported nothing because a signal stopped it (``why: signal``) or killed the
#: training process (``why: killed``, with the exit details and stderr tail a report would
#: have had): the executor reads it beside its scheduler's verdict.
LEFT_FILE = "LEFT_BY_SIGNAL"
RANK_FROM_SLURM = (("RANK", "SLURM_PROCID"), ("LOCAL_RANK", "SLURM_LOCALID"),
                   ("WORLD_SIZE", "SLURM_NTASKS"), ("NODE_RANK", "SLURM_NODEID"))


@dataclass(frozen=True)
class Spec:
    """A spec file: the claim's answer, and the launcher to put before its command."""

    assignment: Assignment
    launch_prefix: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> Spec:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise errors.ConfigError(f"spec: cannot read {path}: {exc}", field="spec") from exc
        if not isinstance(data, Mapping):
            raise errors.ConfigError(f"spec: {path} holds no JSON object", field="spec")
        prefix = data.get("launch_prefix") or []
        if not isinstance(prefix, list) or not all(isinstance(a, str) and a for a in prefix):
            raise errors.ConfigError("spec.launch_prefix: expected a list of strings (argv)",
                                     field="spec.launch_prefix")
        a = Assignment.from_claim(data)
        lease_s = data.get("lease_s")
        if isinstance(lease_s, int | float) and not isinstance(lease_s, bool) and lease_s > 0:
            # Written at the claim, read when the job starts (maybe much later): the lease's
            # length sets the heartbeat interval, not what is left of the claim's lease.
            a = dataclasses.replace(a, claimed_at=a.lease_expires_at - float(lease_s))
        return cls(a, tuple(prefix))


def read_token(token_file: Path | None) -> str:
    """The attempt's credential: from ``token_file`` (which only its owner may read) or
    ``RUNYARD_ATTEMPT_TOKEN``; taken out of this process's environment either way, so the
    training process never inherits it."""
    env_token = os.environ.pop(TOKEN_ENV, None)
    os.environ.pop(TOKEN_FILE_ENV, None)
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            if sys.platform != "win32" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise errors.ConfigError(
                    f"token file: {token_file} may be read by others (mode "
                    f"{stat.S_IMODE(mode):o}); make it 0600", field="token_file")
            token = token_file.read_text("utf-8").strip()
        except OSError as exc:
            raise errors.ConfigError(f"token file: cannot read {token_file}: {exc}",
                                     field="token_file") from exc
    else:
        token = (env_token or "").strip()
    if not token:
        raise errors.ConfigError(f"token: give the attempt's credential in {TOKEN_ENV} or "
                                 "--token-file", field="token")
    return token


@dataclass(frozen=True)
class SuperviseOptions:
    """The options of ``runyard supervise`` (an attempt's supervisor)."""

    server: str
    spec: Path
    token: str
    work_dir: Path = Path("runyard-work")
    host_id: str | None = None
    probe_interval_s: float = 1.0
    stop_grace_s: float = 30.0
    #: A SIGTERM to the supervisor stops the run and reports ``worker_shutdown`` (True),
    #: or leaves the report to the executor (False; it knows why its job was ended).
    report_on_signal: bool = True


def supervise(opts: SuperviseOptions) -> int:
    """Run the attempt to its report; the exit code says how it was reported
    (:data:`EXIT_CODES`)."""
    spec = Spec.read(opts.spec)
    # The spec never holds the credential; the run's Kubeflow trainer status needs it.
    a = dataclasses.replace(spec.assignment, attempt_token=opts.token)
    api = WorkerAPI(opts.server, opts.token)
    stop = signals.StopSignals()
    settings = AttemptSettings(
        host_id=opts.host_id or os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
        work_dir=opts.work_dir.resolve(), probe_interval_s=opts.probe_interval_s,
        stop_grace_s=opts.stop_grace_s, run_cwd=Path.cwd(),
        launch_prefix=spec.launch_prefix, report_on_shutdown=opts.report_on_signal,
        signalled_at=lambda: stop.first_at)
    # GPUs: the allocation's own CUDA_VISIBLE_DEVICES stands (None).
    runner = AttemptRunner(a, api, settings, gpus=None)
    thread = threading.Thread(target=runner.run, name=f"attempt-{a.run_id}", daemon=True)
    log.info("supervising run %s attempt %d (%s)", a.run_id, a.number,
             " ".join(spec.launch_prefix) or "no launcher")
    asked = forced = False
    try:
        with signals.on_stop(state=stop):
            thread.start()
            while thread.is_alive():
                if stop.force.is_set() and not forced:
                    forced = True
                    runner.shutdown(force=True)
                elif stop.graceful.is_set() and not asked:
                    asked = True
                    runner.shutdown()
                thread.join(signals.WAIT_STEP_S * 2)
    finally:
        api.close()
    outcome = runner.outcome or Outcome.UNREPORTED
    if runner.left is not None:
        try:
            (runner.paths.root / LEFT_FILE).write_text(
                json.dumps({**runner.left, "at": time.time()}, default=str), "utf-8")
        except OSError as exc:
            log.warning("cannot mark the attempt as left: %s", exc)
    return EXIT_CODES.get(outcome, 1)


# ------------------------------------------------------------------------- one task of many


class _Prefixer:
    """Output of a node's command, a line at a time, with ``[node rank N]`` before each."""

    def __init__(self, prefix: str, streams: Mapping[str, IO[bytes]]) -> None:
        self.prefix = prefix.encode("utf-8")
        self.streams = streams
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def feed(self, stream: str, offset: int, data: bytes) -> None:
        """The :data:`runyard.agent.process.OutputCallback`."""
        with self._lock:
            *lines, rest = (self._partial.get(stream, b"") + data).split(b"\n")
            self._partial[stream] = rest
            if lines:
                out = self.streams[stream]
                out.write(b"".join(self.prefix + line + b"\n" for line in lines))
                out.flush()

    def flush(self) -> None:
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self.streams[stream].write(self.prefix + rest + b"\n")
                    self.streams[stream].flush()
            self._partial.clear()


def task_env(environ: Mapping[str, str], rank_from_env: bool) -> dict[str, str]:
    """The command's environment: ``environ``, with the rank variables set from Slurm's
    when ``rank_from_env`` (those already set win)."""
    env = dict(environ)
    if rank_from_env:
        for ours, slurm in RANK_FROM_SLURM:
            if ours not in env and slurm in environ:
                env[ours] = environ[slurm]
    return env


def _grace(stop_file: str | None, default: float) -> float:
    """The grace the attempt's supervisor wrote into the stop file (same node), if any."""
    try:
        data = json.loads(Path(stop_file).read_text("utf-8")) if stop_file else None
    except (OSError, ValueError):
        return default
    value = data.get("grace_s") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else default


def run_task(argv: Sequence[str], *, rank_from_env: bool, grace_s: float) -> int:
    """One node's (or task's) share of a multi-node attempt: run ``argv`` to its exit,
    lines prefixed by node and rank, a SIGTERM turned into the stop file and a stop with
    grace. Returns the command's exit code (128 + N for a signal, 127 if it cannot start)."""
    env = task_env(os.environ, rank_from_env)
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    prefix = _Prefixer(f"[{node} rank {env.get('RANK', '0')}] ",
                       {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer})
    stop_file = env.get("RUNYARD_STOP_FILE")
    launch = process.Launch(argv=list(argv), env=env, inherit_env=False, stop_file=stop_file)
    with signals.on_stop() as stop:
        proc = process.start(launch, prefix.feed)
        asked = forced = False
        while (result := proc.poll()) is None:
            if stop.force.is_set() and not forced:
                forced = True
                proc.kill()
            elif stop.graceful.is_set() and not asked:
                asked = True
                proc.request_stop(_grace(stop_file, grace_s))
            time.sleep(signals.WAIT_STEP_S)
    prefix.flush()
    if result.setup_error is not None:
        print(f"runyard supervise --task: {result.setup_error}", file=sys.stderr)
        return 127
    if result.exit_code is not None:
        return result.exit_code
    return 128 + (result.signal or 0)


# ------------------------------------------------------------------------------ the command


def command(*, server: str | None, spec: Path | None, token_file: Path | None,
            work_dir: Path, host_id: str | None, probe_interval_s: float,
            stop_grace_s: float, on_signal: str, task: bool, rank_from_env: bool,
            argv: Sequence[str] = ()) -> int:
    """``runyard supervise`` (and :func:`main`) once its options are parsed: check them, then
    :func:`run_task` with ``--task``, else :func:`supervise`. Returns the exit code; a bad
    option raises :class:`errors.ValidationError` or :class:`errors.ConfigError`."""
    if task:
        if not argv:
            raise errors.ValidationError("command: --task needs the command after --",
                                         field="command")
        return run_task(argv, rank_from_env=rank_from_env, grace_s=stop_grace_s)
    if argv:
        raise errors.ValidationError("command: only --task takes a command; the attempt's "
                                     "comes from --spec", field="command")
    if not server:
        raise errors.ConfigError("server: give --server URL or set RUNYARD_SERVER",
                                 field="server")
    if spec is None:
        raise errors.ConfigError("spec: give --spec FILE (the claim's answer)", field="spec")
    if on_signal not in ("report", "leave"):
        raise errors.ValidationError(f"on_signal: expected report or leave, got {on_signal!r}",
                                     field="on_signal")
    token = read_token(token_file)
    os.environ.pop("RUNYARD_TOKEN", None)  # a worker token has no business here
    if not os.environ.get("RUNYARD_LOG_LEVEL"):
        logging.getLogger("runyard.agent").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(max(logging.getLogger().level, logging.WARNING))
    return supervise(SuperviseOptions(
        server=server, spec=spec, token=token, work_dir=work_dir, host_id=host_id,
        probe_interval_s=probe_interval_s, stop_grace_s=stop_grace_s,
        report_on_signal=on_signal == "report"))


def main(args: Sequence[str] | None = None) -> int:
    """``python -m runyard.agent.supervise``: ``runyard supervise`` with the same options and
    exit codes, for executors (see the module's docstring, "Start-up")."""
    ap = argparse.ArgumentParser(prog="python -m runyard.agent.supervise",
                                 description="runyard supervise (docs/cli.md)")
    env = os.environ.get
    ap.add_argument("--server", default=env("RUNYARD_SERVER"))
    ap.add_argument("--spec", type=Path)
    ap.add_argument("--token-file", type=Path, default=env(TOKEN_FILE_ENV) or None)
    ap.add_argument("--work-dir", type=Path, default=Path("runyard-work"))
    ap.add_argument("--host-id")
    ap.add_argument("--probe-interval-s", type=float, default=defaults.PROBE_INTERVAL_S)
    ap.add_argument("--stop-grace-s", type=float, default=defaults.STOP_GRACE_S)
    ap.add_argument("--on-signal", default="report")
    ap.add_argument("--task", action="store_true")
    ap.add_argument("--rank-from-env", action="store_true")
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    logging.basicConfig(level=os.environ.get("RUNYARD_LOG_LEVEL", "WARNING").upper(),
                        format=defaults.LOG_FORMAT)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    try:
        return command(server=ns.server, spec=ns.spec, token_file=ns.token_file,
                       work_dir=ns.work_dir, host_id=ns.host_id,
                       probe_interval_s=ns.probe_interval_s, stop_grace_s=ns.stop_grace_s,
                       on_signal=ns.on_signal, task=ns.task, rank_from_env=ns.rank_from_env,
                       argv=argv)
    except errors.RunyardError as exc:
        print(f"runyard: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run as this module's real name, so loggers and classes are the ones other modules see.
    from runyard.agent.supervise import main as _main

    sys.exit(_main())
