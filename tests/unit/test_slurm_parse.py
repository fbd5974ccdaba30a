"""Parsing what Slurm 22.05's tools print (outputs captured from the test cluster of
tests/support/slurm.py, plus gres spellings from clusters with GPUs), and mapping job states
to termination reasons."""

from __future__ import annotations

import pytest

from runyard.agent.slurm import parse, partitions, states
from runyard.models import Reason

# `sinfo -h -N -o parse.SINFO_FORMAT` on the two-node test cluster, one node down.
SINFO = """\
debug*|n1|1|4000|(null)|idle|up|infinite
debug*|n2|1|4000|(null)|down*|up|infinite
bench|n1|1|4000|(null)|idle|up|infinite
bench|n2|1|4000|(null)|down*|up|infinite
"""

# A GPU cluster's nodes (gres as Slurm prints it with and without types and sockets).
SINFO_GPU = """\
gpu*|g01|64|512000|gpu:a100:4(S:0-1)|mixed|up|2-00:00:00
gpu*|g02|64|512000|gpu:a100:4(S:0-1),nic:1|allocated|up|2-00:00:00
gpu*|g03|32|256000|gpu:2|drained|up|2-00:00:00
cpu|c01|128|1024000|(null)|idle|down|1:00:00
garbage line
"""

# `squeue -h -t all -o parse.SQUEUE_FORMAT`.
SQUEUE = """\
1|COMPLETED|None|n1|(null)|wrap
2|RUNNING|None|n[1-2]|runyard run r1 attempt 1|runyard-at_123
3|PENDING|Resources||runyard run r2 attempt 2|runyard-at_456|with|bars
"""

# `scontrol show job -o 2` while running, then after scancel.
SCONTROL_RUNNING = (
    "JobId=2 JobName=runyard-abc UserId=root(0) GroupId=root(0) MCS_label=N/A "
    "Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=RUNNING Reason=None "
    "Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:02 "
    "TimeLimit=00:05:00 TimeMin=N/A SubmitTime=2026-12-07T12:51:02 "
    "AllocNode:Sid=localhost:9074 ReqNodeList=(null) ExcNodeList=(null) NodeList=n[1-2] "
    "BatchHost=n1 NumNodes=2 NumCPUs=2 NumTasks=2 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=2,node=2,billing=2 Socks/Node=* NtasksPerN:B:S:C=1:0:*:* CoreSpec=* "
    "MinCPUsNode=1 MinMemoryNode=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
    "OverSubscribe=YES Contiguous=0 Licenses=(null) Network=(null) Command=(null) "
    "WorkDir=/home/lab/runyard Comment=runyard run r1 attempt 1  StdErr=/tmp/j/2.out "
    "StdIn=/dev/null StdOut=/tmp/j/2.out Power= ")


def test_sinfo_nodes_and_offers() -> None:
    nodes = parse.sinfo_nodes(SINFO)
    assert [(n.partition, n.name, n.usable) for n in nodes] == [
        ("debug", "n1", True), ("debug", "n2", False), ("bench", "n1", True),
        ("bench", "n2", False)]
    offer = partitions.pick(partitions.offers(nodes), "debug")
    assert offer is not None
    assert (offer.nodes, offer.nodes_total, offer.cpus, offer.memory_mb, offer.gpus) == \
        (1, 2, 1, 4000, 0)


def test_sinfo_gpus_by_gres_and_partition_state() -> None:
    nodes = parse.sinfo_nodes(SINFO_GPU)
    assert len(nodes) == 4  # the garbage line is skipped
    assert nodes[0].partition == "gpu" and (nodes[0].gpus, nodes[0].gpu_type) == (4, "a100")
    assert (nodes[2].gpus, nodes[2].gpu_type, nodes[2].usable) == (2, "gpu", False)
    gpu, cpu = partitions.offers(nodes)
    assert (gpu.nodes, gpu.cpus, gpu.gpus, gpu.gpu_type, gpu.ram_gib) == (2, 64, 4, "a100", 500)
    assert not cpu.up and cpu.nodes == 0 and cpu.cpus == 0
    entries = partitions.gpu_entries(gpu)
    assert [e["name"] for e in entries] == ["a100"] * 4
    table = partitions.format_table([gpu, cpu], "gpu")
    assert "* gpu" in table and "(partition down)" in table


@pytest.mark.parametrize(("gres", "want"), [
    ("(null)", (0, "")), ("gpu:2", (2, "gpu")), ("gpu:a100:4(S:0-1)", (4, "a100")),
    ("nic:1,gpu:v100:8", (8, "v100")), ("gpu:h100:4(S:0),gpu:a100:2(S:1)", (6, "h100")),
    ("gpu", (0, "")), ("gpu:x:y", (0, "")),
])
def test_gres_gpus(gres: str, want: tuple[int, str]) -> None:
    assert parse.gres_gpus(gres) == want


def test_squeue_jobs_keep_names_with_separators() -> None:
    jobs = parse.squeue_jobs(SQUEUE)
    assert [j.job_id for j in jobs] == ["1", "2", "3"]
    assert jobs[0].comment == "" and jobs[0].nodes == ("n1",)
    assert jobs[1].nodes == ("n1", "n2") and jobs[1].name == "runyard-at_123"
    assert jobs[2].state == "PENDING" and jobs[2].reason == "Resources"
    assert jobs[2].nodes == () and jobs[2].name == "runyard-at_456|with|bars"


def test_scontrol_record_and_job() -> None:
    rec = parse.scontrol_record(SCONTROL_RUNNING)
    assert rec["MinMemoryNode"] == "100M" and rec["NumNodes"] == "2"
    assert rec["CPUs/Task"] == "1" and rec["AllocNode:Sid"] == "localhost:9074"
    assert rec["TRES"] == "cpu=2,node=2,billing=2" and rec["Power"] == ""
    job = parse.scontrol_job(SCONTROL_RUNNING)
    assert job is not None and job.state == "RUNNING" and job.nodes == ("n1", "n2")
    assert job.comment == "runyard run r1 attempt 1" and job.name == "runyard-abc"
    assert parse.scontrol_job("slurm_load_jobs error: Invalid job id specified") is None


def test_sacct_jobs_skip_steps() -> None:
    text = ("8|CANCELLED by 0|0:15|n1|runyard-a\n8.batch|CANCELLED|0:15|n1|batch\n"
            "9|TIMEOUT|0:0|n[1-2]|runyard-b\n")
    jobs = parse.sacct_jobs(text)
    assert [(j.job_id, j.state, j.nodes) for j in jobs] == [
        ("8", "CANCELLED", ("n1",)), ("9", "TIMEOUT", ("n1", "n2"))]


@pytest.mark.parametrize(("text", "want"), [
    ("n1", ("n1",)), ("n[1-3]", ("n1", "n2", "n3")), ("n[01-02],gpu7", ("n01", "n02", "gpu7")),
    ("r[1-2]n[1,3]", ("r1n1", "r1n3", "r2n1", "r2n3")), ("(null)", ()), ("", ()),
    ("n[a-b]", ()),
])
def test_hostlist(text: str, want: tuple[str, ...]) -> None:
    assert parse.hostlist(text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("infinite", None), ("UNLIMITED", None), ("30", 1800.0), ("1:30", 90.0),
    ("1:00:00", 3600.0), ("2-12:00:00", 216000.0), ("2-12", 216000.0), ("x", None),
    ("1-a", None),
])
def test_duration(text: str, want: float | None) -> None:
    assert parse.duration_s(text) == want


@pytest.mark.parametrize(("seconds", "want"), [
    (1, "00:01:00"), (60, "00:01:00"), (61, "00:02:00"), (3600, "01:00:00"),
    (90000, "1-01:00:00")])
def test_format_duration(seconds: float, want: str) -> None:
    assert parse.format_duration(seconds) == want


@pytest.mark.parametrize(("state", "active", "reason"), [
    ("PENDING", True, None), ("RUNNING", True, None), ("COMPLETING", True, None),
    ("CONFIGURING", True, None), ("REQUEUED", True, None),
    ("COMPLETED", False, Reason.LOST), ("FAILED", False, Reason.SETUP_ERROR),
    ("CANCELLED", False, Reason.STOPPED), ("CANCELLED by 0", False, Reason.STOPPED),
    ("CANCELLED+", False, Reason.STOPPED), ("TIMEOUT", False, Reason.TIMEOUT),
    ("DEADLINE", False, Reason.TIMEOUT), ("OUT_OF_MEMORY", False, Reason.OOM),
    ("NODE_FAIL", False, Reason.LOST), ("BOOT_FAIL", False, Reason.LOST),
    ("PREEMPTED", False, Reason.PREEMPTED), ("WEIRD_NEW", False, Reason.LOST),
    (None, False, Reason.LOST),
])
def test_state_verdicts(state: str | None, active: bool, reason: Reason | None) -> None:
    v = states.verdict(state)
    assert v.active is active and v.reason is reason
    assert active or v.message


def test_exit_codes() -> None:
    assert states.exit_code("1:0") == 1 and states.exit_code("0:0") == 0
    assert states.exit_code("0:15") is None and states.exit_code("") is None


# How Slurm ended three jobs on the test clusters (tests/support/slurm.py): a one-minute time
# limit, a preemption by a job of the `high` partition, and a `--mem=100M` job over its memory
# on the cluster that enforces it. `squeue -h -t all -o parse.SQUEUE_FORMAT`, then
# `scontrol show job -o` (the middle of each record left out).
ENDED_SQUEUE = {
    "TIMEOUT": "1|TIMEOUT|TimeLimit|n2|(null)|wrap\n",
    "PREEMPTED": "2|PREEMPTED|None|n1|(null)|wrap\n",
    "OUT_OF_MEMORY": "1|OUT_OF_MEMORY|OutOfMemory|m48b732|(null)|wrap\n",
}
ENDED_SCONTROL = {
    "TIMEOUT": (
        "JobId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
        "Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT "
        "Reason=TimeLimit Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 "
        "ExitCode=0:15 RunTime=00:01:27 TimeLimit=00:01:00 TimeMin=N/A "
        "Partition=debug NodeList=n2 BatchHost=n2 NumNodes=1 NumCPUs=1 MinMemoryNode=0 "
        "StdOut=/dev/null Power= "),
    "PREEMPTED": (
        "JobId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
        "Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=PREEMPTED Reason=None "
        "Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 "
        "RunTime=00:00:01 TimeLimit=UNLIMITED PreemptEligibleTime=2026-12-07T16:56:48 "
        "PreemptTime=2026-12-07T16:56:49 Partition=debug NodeList=n1 BatchHost=n1 "
        "NumNodes=1 StdOut=/dev/null Power= "),
    "OUT_OF_MEMORY": (
        "JobId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
        "Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=OUT_OF_MEMORY "
        "Reason=OutOfMemory Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 "
        "ExitCode=0:125 RunTime=00:00:01 TimeLimit=UNLIMITED Partition=debug "
        "NodeList=m48b732 BatchHost=m48b732 NumNodes=1 TRES=cpu=1,mem=100M,node=1,billing=1 "
        "MinMemoryNode=100M StdOut=/dev/null Power= "),
}
# The same ends as `sacct -P -n -X -o parse.SACCT_FIELDS` prints them (the test clusters keep
# no accounting, so these follow sacct's documented format).
ENDED_SACCT = ("7|TIMEOUT|0:15|n2|runyard-a\n7.batch|CANCELLED|0:15|n2|batch\n"
               "8|PREEMPTED|0:15|n1|runyard-b\n"
               "9|OUT_OF_MEMORY|0:125|n1|runyard-c\n9.batch|OUT_OF_MEMORY|0:125|n1|batch\n")
ENDED_REASONS = {"TIMEOUT": Reason.TIMEOUT, "PREEMPTED": Reason.PREEMPTED,
                 "OUT_OF_MEMORY": Reason.OOM}


@pytest.mark.parametrize("state", sorted(ENDED_REASONS))
def test_how_slurm_ended_a_job_reads_as_its_reason(state: str) -> None:
    (queued,) = parse.squeue_jobs(ENDED_SQUEUE[state])
    shown = parse.scontrol_job(ENDED_SCONTROL[state])
    assert shown is not None and (queued.state, shown.state) == (state, state)
    assert queued.nodes == shown.nodes and queued.nodes
    for seen in (queued.state, shown.state):
        v = states.verdict(seen)
        assert not v.active and v.reason is ENDED_REASONS[state] and v.message
    # Slurm's own signal (TERM) or its out-of-memory code: no exit status of the run's.
    record = parse.scontrol_record(ENDED_SCONTROL[state])
    assert states.exit_code(record["ExitCode"]) is None
    assert record["Requeue"] == "0" and record["Restarts"] == "0"


def test_how_slurm_ended_a_job_reads_the_same_from_accounting() -> None:
    jobs = parse.sacct_jobs(ENDED_SACCT)
    assert [(j.job_id, j.state) for j in jobs] == [
        ("7", "TIMEOUT"), ("8", "PREEMPTED"), ("9", "OUT_OF_MEMORY")]
    assert [states.verdict(j.state).reason for j in jobs] == [
        Reason.TIMEOUT, Reason.PREEMPTED, Reason.OOM]
