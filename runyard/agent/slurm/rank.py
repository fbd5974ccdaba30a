"""One node's part of a multi-node run: ``srun`` starts this once per node
(:mod:`runyard.agent.slurm.launch`).

It sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``NODE_RANK``, and keeps ``MASTER_ADDR``
and ``MASTER_PORT`` from the launcher, then starts the command (``--launcher srun``) or
``torchrun`` for this node (``--launcher torchrun``: ``--nnodes``, ``--nproc-per-node``,
c10d rendezvous at ``MASTER_ADDR:MASTER_PORT``, hosted by the first node). Every line the
command prints is prefixed ``[node rank N]`` (or ``[node]`` before torchrun's own
``[defaultK]:`` rank prefix), so the logs of all nodes stay readable in one file.

Only rank 0 reports progress and metrics: the other ranks' ``RUNYARD_PROGRESS_FILE`` and
``RUNYARD_METRICS_FILE`` point into ``ranks/<rank>/`` beside them, which nobody reads (the
SDK itself writes from rank 0 only). Every rank keeps the shared stop file and gets SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from runyard.agent.slurm import launch, parse


def node_name(env: dict[str, str]) -> str:
    """This node's Slurm name (from the job's node list: ``SLURMD_NODENAME`` may be the batch
    node's, exported into the step)."""
    nodes = parse.hostlist(env.get("SLURM_JOB_NODELIST", ""))
    nid = env.get("SLURM_NODEID", "")
    if nid.isdigit() and int(nid) < len(nodes):
        return nodes[int(nid)]
    return env.get("SLURMD_NODENAME") or os.uname().nodename


def rank_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of this node's command under ``--launcher srun``."""
    out = dict(env)
    rank = env.get("SLURM_PROCID", "0")
    out.update({"RANK": rank, "WORLD_SIZE": env.get("SLURM_NTASKS", "1"),
                "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
                "NODE_RANK": env.get("SLURM_NODEID", "0")})
    if rank != "0":
        for key, name in (("RUNYARD_PROGRESS_FILE", "progress.json"),
                          ("RUNYARD_METRICS_FILE", "metrics.jsonl")):
            if env.get(key):
                side = Path(env[key]).parent / "ranks" / rank
                side.mkdir(parents=True, exist_ok=True)
                out[key] = str(side / name)
    return out


def _relay(src: IO[bytes], dst: IO[bytes], prefix: bytes) -> None:
    for line in iter(src.readline, b""):
        dst.write(prefix + line)
        dst.flush()


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runyard.agent.slurm.rank")
    ap.add_argument("--launcher", choices=launch.LAUNCHERS, default="srun")
    ap.add_argument("--nproc-per-node", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    cmd = ns.cmd[1:] if ns.cmd[:1] == ["--"] else ns.cmd
    if not cmd:
        ap.error("no command given")
    env = dict(os.environ)
    node = node_name(env)
    if ns.launcher == "torchrun":
        nnodes = int(env.get("SLURM_NNODES", "1"))
        node_rank = int(env.get("SLURM_NODEID", "0"))
        endpoint = f"{env.get('MASTER_ADDR', '127.0.0.1')}:{env.get('MASTER_PORT', '29500')}"
        argv = launch.torchrun_argv(sys.executable, nnodes, ns.nproc_per_node, cmd,
                                    rdzv_endpoint=endpoint,
                                    rdzv_id=env.get("SLURM_JOB_ID", "runyard"),
                                    is_host=node_rank == 0)
        env = {**env, "NODE_RANK": str(node_rank)}
        prefix = f"[{node}] ".encode()
    else:
        argv, env = list(cmd), rank_env(env)
        prefix = f"[{node} rank {env['RANK']}] ".encode()
    try:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        sys.stderr.write(f"[{node}] could not start {argv[0]!r}: {exc}\n")
        return 127

    def forward(signum: int, frame: object) -> None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=_relay, args=(proc.stdout, sys.stdout.buffer, prefix),
                                daemon=True),
               threading.Thread(target=_relay, args=(proc.stderr, sys.stderr.buffer, prefix),
                                daemon=True)]
    for t in readers:
        t.start()
    code = proc.wait()
    for t in readers:
        t.join(timeout=5)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
