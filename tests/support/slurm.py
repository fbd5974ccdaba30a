"""A throwaway Slurm cluster on this host for the Slurm tests (tests/slurm/).

:class:`SlurmCluster` writes a ``slurm.conf`` into a temporary directory (the daemons and every
client command find it through ``SLURM_CONF``; nothing under ``/etc/slurm`` is touched), makes
sure ``munged`` runs, and starts ``slurmctld`` and two ``slurmd`` on this host (Debian's build
has multiple-slurmd: ``slurmd -N n1`` and ``-N n2``, each on its own port, NodeAddr
127.0.0.1). Each start has its own ClusterName and a fresh StateSaveLocation, so a reused
machine never meets the last start's state (``CLUSTER NAME MISMATCH``, old job ids).
Everything it started is stopped by PID.

Nodes: ``n1`` and ``n2``, one CPU each (the machine may have only two cores), 4000 MB, no
GPUs (a gres without device files leaves slurmd reporting 0 and the node INVAL).
The ``debug`` partition (default) holds both,
with ``OverSubscribe=FORCE:8`` so a few small jobs share a core instead of queueing behind a
leftover. A ``bench`` partition with ``OverSubscribe=FORCE:64`` is there for the benchmark, and a
``held`` partition that is DOWN keeps the jobs sent to it pending.
``SlurmdTimeout`` is short, so a killed ``slurmd`` turns its node DOWN (and its jobs
NODE_FAIL) within seconds; ``ReturnToService=2`` brings it back when it registers again.
``batch_sched_delay=0``: a submitted job is scheduled at the controller's next pass, within
about a second (with Slurm's default of 3 s, jobs waited for the full pass, every 2 s here).

Preemption: a ``high`` partition over the same nodes with a higher ``PriorityTier``
(``preempt/partition_prio``, ``PreemptMode=REQUEUE``) preempts the jobs of the others when it
needs their node; nothing but a preemption test submits to it.

``SlurmCluster(root, memory_enforced=True)`` is a second kind of cluster, for out-of-memory
kills: one node of its own name, memory a consumable resource (``CR_Core_Memory``) and
``task/cgroup`` holding each job to its ``--mem`` (cgroup v1 memory controller). It is not the
session's cluster because there a job without ``--mem`` would take its node's whole memory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: The Debian packages the cluster is made of (scripts/lib.sh: ensure_slurm).
COMMANDS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun", "slurmctld", "slurmd",
            "munged", "munge")
NODES = ("n1", "n2")
#: Seconds a start may take: a loaded 2-core machine is slow to start three daemons.
START_DEADLINE_S = 90.0
MUNGE_DIR = Path("/run/munge")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here (not installed, not root, a daemon would not start)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing_commands() -> list[str]:
    return [c for c in COMMANDS if shutil.which(c) is None
            and not Path("/usr/sbin", c).exists()]


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class SlurmCluster:
    """One cluster: ``start()``, then ``env`` for client commands, ``stop()`` at the end."""

    root: Path
    name: str = field(default_factory=lambda: f"ry{secrets.token_hex(4)}")
    pids: dict[str, int] = field(default_factory=dict)
    started_munged: bool = False
    memory_enforced: bool = False
    nodes: tuple[str, ...] = NODES

    def __post_init__(self) -> None:
        if self.memory_enforced and self.nodes == NODES:
            # Its own node name: slurmd's cgroups (slurm_<node>) never meet another cluster's.
            self.nodes = (f"m{secrets.token_hex(3)}",)

    # --- paths ------------------------------------------------------------------------------

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment a client command of this cluster needs (laid over os.environ)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def log_path(self, daemon: str) -> Path:
        return self.root / "log" / f"{daemon}.log"

    def pid_path(self, daemon: str) -> Path:
        return self.root / "run" / f"{daemon}.pid"

    # --- start / stop -----------------------------------------------------------------------

    def start(self) -> SlurmCluster:
        missing = missing_commands()
        if missing:
            raise SlurmUnavailable(f"Slurm is not installed (missing: {', '.join(missing)}; "
                                   f"scripts/lib.sh ensure_slurm installs slurm-wlm and munge)")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster's daemons need root (munged runs as the "
                                   "munge user, slurmd starts jobs as their submitter)")
        for d in ("state", "log", "run", "jobs", *(f"spool-{n}" for n in self.nodes)):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        # The job output directory is written by jobs of any submitter.
        (self.root / "jobs").chmod(0o1777)
        self._write_conf()
        self._ensure_munged()
        try:
            self._spawn("slurmctld", [_exe("slurmctld")])
            for node in self.nodes:
                self.start_node(node)
            self.wait_idle(self.nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_conf(self) -> None:
        r = self.root
        ctld_port = free_port()
        host = socket.gethostname()
        node_lines = "\n".join(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} CPUs=1 "
            f"RealMemory=4000 State=UNKNOWN" for n in self.nodes)
        nodes = ",".join(self.nodes)
        self.conf.write_text(f"""\
ClusterName={self.name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool-%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=10
MessageTimeout=10
KillWait=5
MinJobAge=300
MpiDefault=none
SchedulerParameters=sched_interval=2,batch_sched_delay=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
{node_lines}
PartitionName=debug Nodes={nodes} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
PartitionName=bench Nodes={nodes} Default=NO MaxTime=INFINITE State=UP OverSubscribe=FORCE:64
PartitionName=held Nodes={nodes} Default=NO MaxTime=INFINITE State=DOWN
PartitionName=high Nodes={nodes} MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
""")
        if self.memory_enforced:
            text = self.conf.read_text()
            self.conf.write_text(text.replace("TaskPlugin=task/none", "TaskPlugin=task/cgroup")
                                 .replace("SelectTypeParameters=CR_Core\n",
                                          "SelectTypeParameters=CR_Core_Memory\n"))
            # Read by slurmd from beside slurm.conf.
            (self.root / "cgroup.conf").write_text(
                "CgroupPlugin=cgroup/v1\nCgroupAutomount=yes\nConstrainRAMSpace=yes\n"
                "ConstrainSwapSpace=no\nConstrainCores=no\nConstrainDevices=no\n")

    def _ensure_munged(self) -> None:
        if subprocess.run([_exe("munge"), "-n"], capture_output=True).returncode == 0:
            return  # a munged is already serving /run/munge: use it, leave it running
        MUNGE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.chown(MUNGE_DIR, "munge", "munge")
        proc = subprocess.run(["runuser", "-u", "munge", "--", _exe("munged")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"munged would not start: {proc.stderr.strip()}")
        self.started_munged = True
        deadline = time.monotonic() + 30
        while subprocess.run([_exe("munge"), "-n"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SlurmUnavailable("munged started but `munge -n` keeps failing")
            time.sleep(0.1)

    def _spawn(self, key: str, argv: list[str]) -> None:
        """Start a daemon in the foreground (-D) as our child, so its PID is known at once."""
        log = open(self.root / "log" / f"{key}.stderr", "ab")
        proc = subprocess.Popen([*argv, "-D"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.pids[key] = proc.pid
        self._procs = getattr(self, "_procs", {})
        self._procs[key] = proc

    def start_node(self, node: str) -> None:
        """Start (or restart) one node's slurmd."""
        self._spawn(f"slurmd-{node}", [_exe("slurmd"), "-N", node])

    def kill_node(self, node: str) -> None:
        """SIGKILL one node's slurmd, as a dead machine would stop answering."""
        key = f"slurmd-{node}"
        proc = self._procs.get(key)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop(self, keep_munged: bool = False) -> None:
        """Stop every daemon this cluster started (TERM, then KILL), by PID; the ``munged``
        it started too unless ``keep_munged`` (another cluster still uses it)."""
        procs: dict[str, subprocess.Popen[bytes]] = getattr(self, "_procs", {})
        for key in sorted(procs, key=lambda k: k == "slurmctld"):  # the nodes first
            proc = procs[key]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # Job steps outlive a slurmd stopped by TERM (slurmstepd is its own process): kill
        # the ones of this cluster's jobs, found by their spool directory.
        for pid in _stepd_pids(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.memory_enforced:
            _remove_cgroups(self.nodes)
        if self.started_munged and not keep_munged:
            pid_file = MUNGE_DIR / "munged.pid"
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
            self.started_munged = False

    # --- reading it -------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 30,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a client command of this cluster."""
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def node_states(self) -> dict[str, str]:
        proc = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        states: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states.setdefault(parts[0], parts[1])
        return states

    def wait_idle(self, nodes: tuple[str, ...] | None = None,
                  deadline_s: float = START_DEADLINE_S) -> None:
        """Until every node answers (idle, or busy with a leftover job); the logs on failure."""
        nodes = nodes or self.nodes
        deadline = time.monotonic() + deadline_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            for key, proc in getattr(self, "_procs", {}).items():
                if key == "slurmctld" and proc.poll() is not None:
                    raise SlurmUnavailable(f"slurmctld exited {proc.returncode}:\n{self.logs()}")
            states = self.node_states()
            bad = {n: s for n, s in states.items() if s.rstrip("*~#") == "inval"}
            if bad:
                raise SlurmUnavailable(f"nodes refused by slurmctld ({bad}):\n{self.logs()}")
            if all(states.get(n, "").rstrip("*~#") in ("idle", "mix", "alloc") for n in nodes):
                return
            time.sleep(0.25)
        raise SlurmUnavailable(f"nodes not idle after {deadline_s:.0f} s (sinfo: {states}):\n"
                               f"{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        out = []
        for path in sorted((self.root / "log").glob("*")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as key=value pairs (values may hold spaces: see
        runyard.agent.slurm.parse for the real parser; this one serves test assertions)."""
        from runyard.agent.slurm import parse

        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return parse.scontrol_record(out.strip().splitlines()[0])


def _stepd_pids(root: Path) -> list[int]:
    """PIDs of slurmstepd processes whose environment names this cluster's slurm.conf."""
    found = []
    conf = f"SLURM_CONF={root}/slurm.conf".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            if conf in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _remove_cgroups(nodes: tuple[str, ...]) -> None:
    """The (empty, once the jobs are gone) memory cgroups slurmd made for ``nodes``."""
    for node in nodes:
        top = Path("/sys/fs/cgroup/memory") / f"slurm_{node}"
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                        key=lambda p: len(p.parts), reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass
