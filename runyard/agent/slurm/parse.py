"""Reading what Slurm's commands print: ``sinfo``, ``squeue``, ``scontrol show job -o``,
``sacct``, host lists and durations.

Every parser takes the text a command printed with the format the agent asked for
(:mod:`runyard.agent.slurm.commands` names the formats) and never raises on odd lines: a line
it cannot read is skipped, so one strange partition or job never stops the agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: The separator of the formats the agent asks for (job names come last: they may hold it).
SEP = "|"

#: ``sinfo -h -N -o`` format: partition, node, CPUs, memory (MB), gres, state, availability,
#: time limit. One line per node and partition.
SINFO_FORMAT = SEP.join(("%R", "%N", "%c", "%m", "%G", "%T", "%a", "%l"))
#: ``squeue -h -o`` format: job id, state, reason, node list, comment, name.
SQUEUE_FORMAT = SEP.join(("%i", "%T", "%r", "%N", "%k", "%j"))
#: ``sacct -P -n -o`` fields (``-P`` separates them with ``|``).
SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "JobName")

#: Node states that take no new job (``sinfo %T``; a trailing ``*``, ``~``, ``#``... is a flag).
_UNUSABLE = ("down", "drain", "drained", "draining", "fail", "failing", "inval",
             "not_responding", "future", "maint", "reboot", "power_down", "powered_down",
             "unknown")


@dataclass(frozen=True)
class NodeInfo:
    """One node of one partition, as ``sinfo -N`` shows it."""

    partition: str
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    gpu_type: str
    state: str
    partition_up: bool
    time_limit: str

    @property
    def usable(self) -> bool:
        """Up and able to take jobs now (idle, mixed or allocated)."""
        base = self.state.rstrip("*~#!%$@^-+").lower()
        return self.partition_up and not any(base.startswith(u) for u in _UNUSABLE)


@dataclass(frozen=True)
class JobInfo:
    """One job, as ``squeue`` (or ``scontrol``/``sacct``) shows it."""

    job_id: str
    state: str
    reason: str = ""
    nodes: tuple[str, ...] = ()
    comment: str = ""
    name: str = ""
    exit_code: str = ""


def _int(text: str) -> int:
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else 0


def gres_gpus(gres: str) -> tuple[int, str]:
    """GPUs per node and their type from a gres string: ``gpu:a100:4(S:0-1),nic:1`` ->
    ``(4, "a100")``; ``gpu:2`` -> ``(2, "gpu")``; ``(null)`` -> ``(0, "")``."""
    total, kind = 0, ""
    for item in _split_top(gres):
        parts = item.split("(", 1)[0].split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = parts[-1]
        if not count.isdigit():
            continue
        total += int(count)
        if not kind:
            kind = parts[1] if len(parts) >= 3 else "gpu"
    return total, kind


def _split_top(text: str, brackets: str = "()") -> list[str]:
    """Split on commas outside ``brackets`` (``gpu:2(S:0-1),nic:1``, ``n[1-3],m1``)."""
    opening, closing = brackets[0], brackets[1]
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return [x.strip() for x in out if x.strip()]


def sinfo_nodes(text: str) -> list[NodeInfo]:
    """Rows of ``sinfo -h -N -o SINFO_FORMAT``."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) != 8 or not parts[0]:
            continue
        gpus, kind = gres_gpus(parts[4])
        nodes.append(NodeInfo(partition=parts[0].rstrip("*"), name=parts[1], cpus=_int(parts[2]),
                              memory_mb=_int(parts[3]), gpus=gpus, gpu_type=kind,
                              state=parts[5], partition_up=parts[6].lower() == "up",
                              time_limit=parts[7]))
    return nodes


def squeue_jobs(text: str) -> list[JobInfo]:
    """Rows of ``squeue -h -o SQUEUE_FORMAT``."""
    jobs = []
    for line in text.splitlines():
        parts = line.rstrip("\n").split(SEP, 5)
        if len(parts) != 6 or not parts[0].strip():
            continue
        jobs.append(JobInfo(job_id=parts[0].strip(), state=parts[1].strip(),
                            reason=parts[2].strip(), nodes=hostlist(parts[3].strip()),
                            comment=_null(parts[4].strip()), name=parts[5].strip()))
    return jobs


def sacct_jobs(text: str) -> list[JobInfo]:
    """Rows of ``sacct -P -n -o SACCT_FIELDS``, the jobs only (not their ``.batch`` steps)."""
    jobs = []
    for line in text.splitlines():
        parts = line.split(SEP, len(SACCT_FIELDS) - 1)
        if len(parts) != len(SACCT_FIELDS) or "." in parts[0] or not parts[0]:
            continue
        # sacct spells a cancellation "CANCELLED by 0": the state is the first word.
        jobs.append(JobInfo(job_id=parts[0], state=parts[1].split()[0] if parts[1] else "",
                            exit_code=parts[2], nodes=hostlist(parts[3]), name=parts[4]))
    return jobs


_KEY_RE = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def scontrol_record(line: str) -> dict[str, str]:
    """One record of ``scontrol show ... -o`` (``Key=Value Key=Value``; a value may hold
    spaces, up to the next ``Key=``)."""
    out: dict[str, str] = {}
    matches = list(_KEY_RE.finditer(line))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def scontrol_job(text: str) -> JobInfo | None:
    """The job of ``scontrol show job -o ID`` (None when the text holds none)."""
    for line in text.splitlines():
        rec = scontrol_record(line)
        if "JobId" in rec:
            return JobInfo(job_id=rec["JobId"], state=rec.get("JobState", ""),
                           reason=rec.get("Reason", ""),
                           nodes=hostlist(_null(rec.get("NodeList", ""))),
                           comment=_null(rec.get("Comment", "")), name=rec.get("JobName", ""),
                           exit_code=rec.get("ExitCode", ""))
    return None


def _null(text: str) -> str:
    return "" if text in ("(null)", "None") else text


def hostlist(text: str) -> tuple[str, ...]:
    """Expand a Slurm host list: ``n[1-3,7],gpu01`` -> ``("n1", "n2", "n3", "n7", "gpu01")``.
    Zero padding is kept (``n[01-02]`` -> ``n01``, ``n02``); ``(null)`` and ``""`` are empty."""
    text = _null(text.strip())
    if not text:
        return ()
    return tuple(h for part in _split_top(text, "[]") for h in _expand(part))


def _expand(part: str) -> Iterator[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", part)
    if not m:
        yield part
        return
    prefix, ranges, rest = m.groups()
    for r in ranges.split(","):
        lo, _, hi = r.partition("-")
        if not hi:
            for tail in _expand(rest):
                yield f"{prefix}{lo}{tail}"
            continue
        if not (lo.isdigit() and hi.isdigit()):
            continue
        width = len(lo) if lo.startswith("0") else 0
        for n in range(int(lo), int(hi) + 1):
            for tail in _expand(rest):
                yield f"{prefix}{str(n).zfill(width)}{tail}"


def duration_s(text: str) -> float | None:
    """A Slurm duration (``infinite``, ``30``, ``1:00:00``, ``2-12:00:00``, ``2-12``) in
    seconds; None for unlimited or unreadable."""
    text = text.strip().lower()
    if text in ("", "infinite", "unlimited", "n/a", "none"):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
        if text and ":" not in text:
            text += ":00:00"  # "2-12" is days-hours
    parts = text.split(":") if text else ["0"]
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    nums = [int(p) for p in parts]
    if len(nums) == 1:
        secs = nums[0] * 60  # minutes alone
    elif len(nums) == 2:
        secs = nums[0] * 60 + nums[1]  # minutes:seconds
    else:
        secs = nums[0] * 3600 + nums[1] * 60 + nums[2]
    return float(days * 86400 + secs)


def format_duration(seconds: float) -> str:
    """Seconds as an ``sbatch --time`` value (``D-HH:MM:SS``), rounded up to a whole minute
    (Slurm counts time limits in minutes)."""
    minutes = max(int(-(-seconds // 60)), 1)
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"
