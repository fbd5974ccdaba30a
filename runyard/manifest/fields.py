"""Per-key checks of the fields jobs and blueprints share: constraints and retry policy.

Each key is checked on its own so that one manifest reports every bad key at once; the
constraint checks themselves are ``runyard.models.Constraints``'s.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from runyard import errors, models, slurm_options
from runyard.manifest.locator import Path
from runyard.manifest.problems import Problems

#: Constraint keys, written at the top level of a job or blueprint (docs/manifest.md).
CONSTRAINT_KEYS: tuple[str, ...] = tuple(models.Constraints.__dataclass_fields__)
#: Scheduling and supervision policy keys (docs/http-api.md, ``POST /v1/runs``).
POLICY_KEYS: tuple[str, ...] = (
    "priority", "max_attempts", "max_restarts_on_errors", "retry_on_exit_codes",
    "probe_interval_s", "stall_after_s",
)

#: A blueprint's defaults for its Slurm runs, and a Slurm job's own (docs/executors.md).
SLURM_KEYS: tuple[str, ...] = ("launcher", "slurm")
#: The executors a manifest job may name: the fleet's agents (the default) or Slurm. Runs
#: started by hand (``local``) are never queued, so no manifest job is one.
JOB_EXECUTORS: tuple[str, ...] = ("agent", "slurm")


def reject_unknown(data: Mapping[str, Any], known: Iterable[str], base: Path,
                   problems: Problems) -> None:
    """One ``unknown key`` problem per key not in ``known``, with a close match when any."""
    allowed = list(known)
    for key in data:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(base + (key,), f"unknown key{hint}")


def check_constraints(data: Mapping[str, Any], base: Path, problems: Problems) -> dict[str, Any]:
    """The constraint keys present in ``data`` that are valid, normalised."""
    out: dict[str, Any] = {}
    for key in CONSTRAINT_KEYS:
        if key not in data:
            continue
        try:
            parsed = models.Constraints.from_dict({key: data[key]}, prefix="")
        except errors.ValidationError as exc:
            problems.add_validation(base, exc)
            continue
        # Keys at their default are left out of to_dict (nodes = 1): take the attribute.
        out[key] = parsed.to_dict().get(key, getattr(parsed, key))
    return out


def check_slurm(data: Mapping[str, Any], base: Path, problems: Problems) -> dict[str, Any]:
    """The ``launcher`` and ``slurm`` keys present in ``data`` that are valid, normalised."""
    out: dict[str, Any] = {}
    try:
        if "launcher" in data:
            out["launcher"] = slurm_options.check_launcher(data["launcher"])
        if "slurm" in data:
            out["slurm"] = slurm_options.SlurmOptions.from_dict(data["slurm"]).to_dict()
    except errors.ValidationError as exc:
        problems.add_validation(base, exc)
    return out


def check_executor(data: Mapping[str, Any], base: Path, problems: Problems) -> str | None:
    """A job's ``executor``, or None when it names none (or a bad one, recorded)."""
    if "executor" not in data:
        return None
    value = data["executor"]
    if value not in JOB_EXECUTORS:
        problems.add(base + ("executor",), f"expected \"agent\" (the fleet's agents, the "
                     f"default) or \"slurm\", got {value!r}")
        return None
    return str(value)


def _int(value: Any, path: Path, problems: Problems, *, minimum: int | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, f"expected an integer, got {value!r}")
        return None
    if minimum is not None and value < minimum:
        problems.add(path, f"must be at least {minimum}, got {value}")
        return None
    return value


def _seconds(value: Any, path: Path, problems: Problems) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.add(path, f"expected a number of seconds, got {value!r}")
        return None
    if value <= 0:
        problems.add(path, f"must be greater than 0, got {value}")
        return None
    return float(value)


def check_policy(data: Mapping[str, Any], base: Path, problems: Problems) -> dict[str, Any]:
    """The retry/probe policy keys present in ``data`` that are valid."""
    out: dict[str, Any] = {}
    checks: dict[str, Any] = {
        "priority": lambda v, p: _int(v, p, problems, minimum=None),
        "max_attempts": lambda v, p: _int(v, p, problems, minimum=1),
        "max_restarts_on_errors": lambda v, p: _int(v, p, problems, minimum=0),
        "probe_interval_s": lambda v, p: _seconds(v, p, problems),
        "stall_after_s": lambda v, p: _seconds(v, p, problems),
    }
    for key, check in checks.items():
        if key in data:
            value = check(data[key], base + (key,))
            if value is not None:
                out[key] = value
    if "retry_on_exit_codes" in data:
        codes = data["retry_on_exit_codes"]
        path = base + ("retry_on_exit_codes",)
        if not isinstance(codes, list):
            problems.add(path, f"expected a list of exit codes, got {codes!r}")
        else:
            checked = [_int(c, path + (i,), problems, minimum=None) for i, c in enumerate(codes)]
            if all(c is not None for c in checked):
                out["retry_on_exit_codes"] = checked
    return out


def check_str(data: Mapping[str, Any], key: str, base: Path, problems: Problems,
              default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        problems.add(base + (key,), f"expected a string, got {value!r}")
        return default
    return value


def check_json_value(value: Any, path: Path, problems: Problems) -> bool:
    """True when ``value`` survives JSON (configs are handed to training code as JSON)."""
    if isinstance(value, bool | str) or value is None:
        return True
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        if math.isfinite(value):
            return True
        problems.add(path, f"{value!r} cannot be written as JSON")
        return False
    if isinstance(value, list):
        return all([check_json_value(v, path + (i,), problems) for i, v in enumerate(value)])
    if isinstance(value, dict):
        return all([check_json_value(v, path + (k,), problems) for k, v in value.items()])
    problems.add(path, f"{type(value).__name__} value {value!s} cannot be written as JSON")
    return False


def check_rules(data: Mapping[str, Any], base: Path, problems: Problems
                ) -> list[dict[str, Any]]:
    """A blueprint's ``rules`` (docs/rules.md), each in its normalised JSON form; each bad
    rule is one problem naming its key (``blueprints[0].rules[1].pattern``)."""
    from runyard.rules import spec

    value = data.get("rules")
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(base + ("rules",), "expected an array of rule tables, e.g. rules = "
                                        "[{when = \"nan\", tag = \"loss\", then = [\"stop\"]}]")
        return []
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, item in enumerate(value):
        try:
            rule = spec.parse_rule(item, f"rules[{i}].")
        except errors.ValidationError as exc:
            problems.add_validation(base, exc)
            continue
        if rule.name in names:
            problems.add(base + ("rules", i, "name"), f"duplicate rule name {rule.name!r}")
            continue
        names.add(rule.name)
        out.append(rule.to_dict())
    if len(out) > spec.MAX_RULES:
        problems.add(base + ("rules",), f"at most {spec.MAX_RULES} rules, got {len(out)}")
    return out
