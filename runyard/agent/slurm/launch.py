"""How a run's command starts inside its allocation (docs/executors.md, "Multi-node").

One ``runyard supervise`` per attempt runs in the job's batch shell, on the allocation's first
node, and reports for the whole attempt. What it starts is the run's command behind the
*launch prefix* this module builds (:func:`launch_prefix`), the spec's ``launch_prefix``:

* one node, ``launcher: "srun"``: no prefix, the command runs as on a local agent;
* several nodes, ``launcher: "srun"``: ``srun --kill-on-bad-exit=1 python -m
  runyard.agent.supervise --task --rank-from-env -- CMD`` (``runyard supervise --task``): one
  task per node (the job has ``--ntasks-per-node=1``), each setting
  ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``NODE_RANK`` from ``SLURM_*``, prefixing its lines
  ``[node rank N]`` and turning SIGTERM into the stop file;
* ``launcher: "torchrun"``: the same, with ``python -m runyard.agent.slurm.launch torchrun``
  between ``--`` and the command, which on each node runs ``torchrun --nnodes N
  --nproc-per-node G --node-rank NODE_RANK --master-addr A --master-port P`` with the
  command's script or module: a static rendezvous, so node rank 0, the supervisor's node,
  holds global rank 0 and its progress and metrics files are the ones the supervisor reads.
  One node: ``torchrun --standalone``.

``MASTER_ADDR`` and ``MASTER_PORT`` are the executor's: the job script runs ``python -m
runyard.agent.slurm.launch env`` on the first node before ``runyard supervise`` and exports
what it prints (the node's ``NodeAddr`` from ``scontrol``, and a free port there).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence

from runyard.agent.slurm import parse

LAUNCHERS = ("srun", "torchrun")


def _is_python(arg: str) -> bool:
    base = os.path.basename(arg)
    return base.startswith("python") or arg == sys.executable


def script_args(argv: Sequence[str]) -> list[str]:
    """The command as ``torchrun`` takes it: without a leading Python interpreter
    (``python train.py --x`` -> ``train.py --x``; ``python -m pkg.train`` -> ``--module
    pkg.train``)."""
    args = list(argv)
    if args and _is_python(args[0]):
        args = args[1:]
    if args[:1] == ["-m"]:
        return ["--module", *args[1:]]
    return args


def torchrun_argv(python: str, cmd: Sequence[str], *, nnodes: int, nproc_per_node: int,
                  env: Mapping[str, str]) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``) for this node."""
    argv = [python, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
            f"--nproc-per-node={max(nproc_per_node, 1)}"]
    if nnodes <= 1:
        argv.append("--standalone")
    else:
        # Static rendezvous: every node knows its rank, so global rank 0 is on node 0.
        argv += [f"--node-rank={env.get('NODE_RANK') or env.get('SLURM_NODEID') or '0'}",
                 f"--master-addr={env.get('MASTER_ADDR') or '127.0.0.1'}",
                 f"--master-port={env.get('MASTER_PORT') or '29500'}"]
    return argv + script_args(cmd)


def launch_prefix(launcher: str, *, nodes: int, gpus_per_node: int,
                  python: str = sys.executable) -> list[str]:
    """The spec's ``launch_prefix`` for a run (see the module's docstring)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher: expected one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    torchrun = [python, "-m", "runyard.agent.slurm.launch", "torchrun", f"--nnodes={nodes}",
                f"--nproc-per-node={max(gpus_per_node, 1)}", "--"]
    if nodes <= 1:
        return torchrun if launcher == "torchrun" else []
    task = ["srun", "--kill-on-bad-exit=1", python, "-m", "runyard.agent.supervise", "--task",
            "--rank-from-env", "--"]
    return task + (torchrun if launcher == "torchrun" else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def master_addr(env: Mapping[str, str]) -> str:
    """The first node's address: its ``NodeAddr`` as ``scontrol`` tells it, else this host's
    name (this runs on the first node)."""
    nodes = parse.hostlist(env.get("SLURM_JOB_NODELIST", ""))
    if nodes:
        try:
            out = subprocess.run(["scontrol", "show", "node", "-o", nodes[0]],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            addr = parse.scontrol_record(out.splitlines()[0]).get("NodeAddr") if out else None
            if addr:
                return addr
        except (OSError, subprocess.SubprocessError):
            pass
    return socket.gethostname()


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runyard.agent.slurm.launch")
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("env", help="print MASTER_ADDR and MASTER_PORT exports for the job script")
    tr = sub.add_parser("torchrun", help="run torchrun for this node with the command")
    tr.add_argument("--nnodes", type=int, default=1)
    tr.add_argument("--nproc-per-node", type=int, default=1)
    tr.add_argument("cmd", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    env = dict(os.environ)
    if ns.what == "env":
        addr = env.get("MASTER_ADDR") or master_addr(env)
        port = env.get("MASTER_PORT") or str(free_port())
        print(f"export MASTER_ADDR={shlex.quote(addr)} MASTER_PORT={shlex.quote(port)}")
        return 0
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    if not cmd:
        ap.error("no command given")
    argv = torchrun_argv(sys.executable, cmd, nnodes=ns.nnodes,
                         nproc_per_node=ns.nproc_per_node, env=env)
    # exec: the supervise --task above (or the supervisor) signals torchrun itself.
    os.execvpe(argv[0], argv, env)
    return 127  # pragma: no cover - execvpe does not return


if __name__ == "__main__":
    sys.exit(main())
