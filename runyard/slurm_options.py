"""A run's Slurm options and launcher, checked where they enter (docs/executors.md).

``slurm = {partition, account, qos, time_limit, sbatch_args}`` on a run or a blueprint. Every
value is later put on an ``sbatch`` command line by an agent that submits as its own Slurm
user, on behalf of whoever submitted the run: so names are plain words, a time limit is a
time, and extra ``sbatch`` arguments are ``--name=value`` options from an allow-list of ones
that only shape where and how the job is placed. Anything that would change who the job runs
as, where it reads or writes (``--chdir``, ``--output``...), its environment (``--export``),
its name or comment (which carry the attempt id the agent finds its jobs by), the resources
Runyard maps itself (``--nodes``, ``--mem``, ``--gres``...), its signals or requeueing, or
which cluster it goes to, is refused with a 422 naming the field.

No server stack here: the agent's Slurm executor reads the stored options with the same code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runyard import errors

#: How a multi-node run starts its command on the nodes.
LAUNCHERS = ("srun", "torchrun")
DEFAULT_LAUNCHER = "srun"

#: ``sbatch`` options a run may add (long form, ``--name=value`` or a bare ``--flag``):
#: placement and hardware preferences only. ``True``: takes a value; ``False``: a bare flag;
#: ``None``: either.
SBATCH_ALLOWED: dict[str, bool | None] = {
    "constraint": True, "prefer": True, "exclude": True, "nodelist": True,
    "reservation": True, "licenses": True, "exclusive": None, "contiguous": False,
    "spread-job": False, "nice": True, "hint": True, "threads-per-core": True,
    "cores-per-socket": True, "sockets-per-node": True, "tmp": True, "gres-flags": True,
    "gpu-bind": True, "cpu-freq": True, "distribution": True, "switches": True,
    "wckey": True, "mem-bind": True,
}
#: Most extra arguments one run may give, and the longest.
SBATCH_ARGS_MAX = 32
SBATCH_ARG_CHARS = 200
#: A value: no spaces, quotes, shell or control characters (the agent may write
#: ``#SBATCH`` lines), but what constraint expressions and node lists use.
_VALUE_RE = re.compile(r"^[A-Za-z0-9_.,:@+\-/\[\]*&|!()%=]+$")
_ARG_RE = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$", re.DOTALL)
#: Partition, account and QOS names.
_WORD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_CLOCK_RE = re.compile(r"^(?:(\d{1,3})-)?(\d{1,4}):([0-5]?\d):([0-5]?\d)$")
#: Longest time limit accepted: a year, in minutes.
TIME_LIMIT_MAX_MIN = 366 * 24 * 60
_KEYS = ("partition", "account", "qos", "time_limit", "sbatch_args")


def _fail(field: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{field}: {message}", field=field)


def time_limit_minutes(value: Any, field: str = "slurm.time_limit") -> int:
    """A time limit given as minutes (an integer) or ``"HH:MM:SS"`` (``"D-HH:MM:SS"`` too),
    as whole minutes, rounded up as Slurm does."""
    if isinstance(value, bool):
        raise _fail(field, f"expected minutes or \"HH:MM:SS\", got {value!r}")
    if isinstance(value, int):
        minutes = value
    elif isinstance(value, str) and (m := _CLOCK_RE.match(value)):
        days, hours, mins, secs = (int(g) if g else 0 for g in m.groups())
        total_s = ((days * 24 + hours) * 60 + mins) * 60 + secs
        minutes = -(-total_s // 60)
    else:
        raise _fail(field, f"expected minutes or \"HH:MM:SS\", got {value!r}")
    if not 1 <= minutes <= TIME_LIMIT_MAX_MIN:
        raise _fail(field, f"must be between 1 minute and {TIME_LIMIT_MAX_MIN} minutes, "
                           f"got {value!r}")
    return minutes


def sbatch_time(minutes: int) -> str:
    """``--time`` for ``sbatch``: ``D-HH:MM:00``."""
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def check_sbatch_args(value: Any, field: str = "slurm.sbatch_args") -> list[str]:
    """Extra ``sbatch`` arguments, each ``--name=value`` or ``--flag`` of
    :data:`SBATCH_ALLOWED`; anything else is a 422 naming the argument."""
    if not isinstance(value, list):
        raise _fail(field, "expected a list of \"--option=value\" strings")
    if len(value) > SBATCH_ARGS_MAX:
        raise _fail(field, f"at most {SBATCH_ARGS_MAX} arguments, got {len(value)}")
    out = []
    for i, arg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(arg, str) or not arg or len(arg) > SBATCH_ARG_CHARS:
            raise _fail(where, f"expected an option of at most {SBATCH_ARG_CHARS} characters")
        m = _ARG_RE.match(arg)
        if m is None:
            raise _fail(where, f"expected --option=value (long options only), got {arg!r}")
        name, val = m.group(1), m.group(2)
        if name not in SBATCH_ALLOWED:
            raise _fail(where, f"sbatch option --{name} is not allowed (allowed: "
                               f"{', '.join('--' + n for n in sorted(SBATCH_ALLOWED))})")
        wants = SBATCH_ALLOWED[name]
        if wants is True and not val:
            raise _fail(where, f"--{name} needs a value: --{name}=VALUE")
        if wants is False and val is not None:
            raise _fail(where, f"--{name} takes no value")
        if val is not None and not _VALUE_RE.match(val):
            raise _fail(where, f"the value of --{name} holds a character not allowed "
                               "(spaces, quotes and control characters are refused)")
        out.append(arg)
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """What a run asks of Slurm beyond its constraints; every field optional."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: Minutes (``--time``).
    time_limit: int | None = None
    sbatch_args: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, prefix: str = "slurm") -> SlurmOptions:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _fail(prefix, "expected an object of partition, account, qos, time_limit, "
                                "sbatch_args")
        for key in data:
            if key not in _KEYS:
                raise _fail(f"{prefix}.{key}", f"unknown key (known: {', '.join(_KEYS)})")
        words: dict[str, str | None] = {}
        for key in ("partition", "account", "qos"):
            value = data.get(key)
            if value is not None and (not isinstance(value, str) or not _WORD_RE.match(value)):
                raise _fail(f"{prefix}.{key}", f"expected a name of letters, digits and ._- "
                                               f"(at most 64), got {value!r}")
            words[key] = value
        limit = data.get("time_limit")
        return cls(
            partition=words["partition"], account=words["account"], qos=words["qos"],
            time_limit=None if limit is None else time_limit_minutes(limit,
                                                                     f"{prefix}.time_limit"),
            sbatch_args=tuple(check_sbatch_args(data.get("sbatch_args") or [],
                                                f"{prefix}.sbatch_args")))

    def to_dict(self) -> dict[str, Any]:
        """As stored and shown: only the keys given."""
        out: dict[str, Any] = {k: getattr(self, k) for k in ("partition", "account", "qos",
                                                             "time_limit")
                               if getattr(self, k) is not None}
        if self.sbatch_args:
            out["sbatch_args"] = list(self.sbatch_args)
        return out

    def merged(self, over: SlurmOptions) -> SlurmOptions:
        """These options with ``over``'s given fields on top (a run's over its blueprint's)."""
        return SlurmOptions(
            partition=over.partition or self.partition, account=over.account or self.account,
            qos=over.qos or self.qos,
            time_limit=over.time_limit if over.time_limit is not None else self.time_limit,
            sbatch_args=over.sbatch_args or self.sbatch_args)


def check_launcher(value: Any, field: str = "launcher") -> str:
    if value not in LAUNCHERS:
        raise _fail(field, f"expected one of {', '.join(LAUNCHERS)}, got {value!r}")
    return str(value)
