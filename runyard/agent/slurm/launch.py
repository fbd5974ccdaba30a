"""Multi-node launch inside a Slurm allocation (docs/executors.md, "Multi-node").

``runyard supervise`` runs on the job's first node and supervises one process, as the local
agent does. For a run over several nodes that process is this module::

    python -m runyard.agent.slurm.launch --launcher srun|torchrun --nproc-per-node G -- CMD...

It picks ``MASTER_ADDR`` (the first node's address) and a free ``MASTER_PORT`` on it, and
starts ``srun`` with one task per node, each running :mod:`runyard.agent.slurm.rank`, which
starts the command (``srun``) or ``torchrun`` (``torchrun``) on its node, with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, and prefixes every
output line with the node and rank. All output comes back through ``srun`` into the
supervisor's logs.

Stopping: ``srun`` answers SIGTERM by killing its tasks at once, so it runs in a session of its
own, out of reach of the supervisor's SIGTERM; this process turns a SIGTERM into
``scancel --signal=TERM JOB`` (the job's steps, every rank on every node; not the batch shell
where the supervisor runs) and waits. Every rank also sees the stop file, which lives on the
shared work directory. When the grace period ends the supervisor kills this process; the job
then ends and Slurm kills what is left.

:func:`wrap` builds the argv the supervisor runs for a run's command.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

from runyard.agent.slurm import parse

LAUNCHERS = ("srun", "torchrun")


def _is_python(arg: str) -> bool:
    base = os.path.basename(arg)
    return base.startswith("python") or arg == sys.executable


def script_args(argv: Sequence[str]) -> list[str]:
    """The command as ``torchrun`` takes it: without a leading Python interpreter
    (``python train.py --x`` -> ``train.py --x``; ``python -m pkg.train`` -> ``-m pkg.train``)."""
    args = list(argv)
    if args and _is_python(args[0]):
        args = args[1:]
    return args


def torchrun_argv(python: str, nnodes: int, nproc_per_node: int, cmd: Sequence[str], *,
                  rdzv_endpoint: str | None, rdzv_id: str, is_host: bool | None) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``) for one node."""
    argv = [python, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
            f"--nproc-per-node={nproc_per_node}", "--tee=3"]
    if rdzv_endpoint is None:
        argv.append("--standalone")
    else:
        argv += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}",
                 f"--rdzv-id={rdzv_id}"]
        if is_host is not None:
            # Several "nodes" may share one machine (and every node resolves the endpoint
            # alike on some clusters): say outright which one hosts the rendezvous store.
            argv.append(f"--rdzv-conf=is_host={'1' if is_host else '0'}")
    cmd = script_args(cmd)
    if cmd[:1] == ["-m"]:
        argv += ["--module", *cmd[1:]]
    else:
        argv += cmd
    return argv


def wrap(argv: Sequence[str], *, launcher: str, nodes: int, nproc_per_node: int,
         python: str = sys.executable) -> list[str]:
    """What the supervisor runs for a run's (rendered) command."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher: expected one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    nproc = max(nproc_per_node, 1)
    if nodes <= 1:
        if launcher == "torchrun":
            return torchrun_argv(python, 1, nproc, argv, rdzv_endpoint=None, rdzv_id="",
                                 is_host=None)
        return list(argv)
    return [python, "-m", "runyard.agent.slurm.launch", f"--launcher={launcher}",
            f"--nodes={nodes}", f"--nproc-per-node={nproc}", "--", *argv]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def master_addr(env: dict[str, str]) -> str:
    """The first node's address: its ``NodeAddr`` when ``scontrol`` tells it, else its name
    (this process runs on it, so its own hostname is the fallback)."""
    nodes = parse.hostlist(env.get("SLURM_JOB_NODELIST", ""))
    if nodes:
        try:
            out = subprocess.run(["scontrol", "show", "node", "-o", nodes[0]],
                                 capture_output=True, text=True, timeout=30).stdout
            addr = parse.scontrol_record(out.strip().splitlines()[0]).get("NodeAddr") \
                if out.strip() else None
            if addr:
                return addr
        except (OSError, subprocess.SubprocessError):
            pass
    return socket.gethostname()


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runyard.agent.slurm.launch")
    ap.add_argument("--launcher", choices=LAUNCHERS, default="srun")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--nproc-per-node", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    if not cmd:
        ap.error("no command given")
    env = dict(os.environ)
    env.setdefault("MASTER_ADDR", master_addr(env))
    env.setdefault("MASTER_PORT", str(_free_port()))
    srun = ["srun", f"--nodes={ns.nodes}", f"--ntasks={ns.nodes}", "--ntasks-per-node=1",
            "--kill-on-bad-exit=1", "--export=ALL", sys.executable, "-m",
            "runyard.agent.slurm.rank", f"--launcher={ns.launcher}",
            f"--nproc-per-node={ns.nproc_per_node}", "--", *cmd]
    proc = subprocess.Popen(srun, env=env, start_new_session=True)
    job = env.get("SLURM_JOB_ID")

    def on_stop(signum: int, frame: object) -> None:
        # The ranks' steps get the signal; srun (and the batch shell) do not.
        if job:
            subprocess.run(["scancel", f"--signal={signal.Signals(signum).name[3:]}", job],
                           capture_output=True, timeout=30)
        else:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    while True:
        try:
            code = proc.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
