"""A rule object (docs/rules.md): read, checked and normalised.

``{"name": "flat", "when": "plateau", "tag": "val_loss", "patience": 5, "then": ["stop"]}``

Every error is a :class:`runyard.errors.ValidationError` naming the field as the caller sent
it (``rules[0].pattern``), so the API answers 422 with that field and stores nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard import defaults, errors, models

MAX_TAG_LEN = defaults.METRIC_NAME_MAX

#: Every condition, with the keys a rule of it may carry beside ``name``, ``when``, ``then``.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "nan": ("tag",),
    "threshold": ("tag", "op", "value", "for_points"),
    "plateau": ("tag", "mode", "patience", "min_delta", "min_step"),
    "stalled": ("after_s",),
    "log": ("pattern", "stream"),
    "status": ("status",),
    "runtime": ("max_s", "eta"),
}
#: Conditions on metric values (points and snapshots feed them).
METRIC = frozenset({"nan", "threshold", "plateau"})
#: Conditions the server's sweeper evaluates on a clock.
TIMED = frozenset({"stalled", "runtime"})
OPS = ("<", "<=", ">", ">=")
ACTIONS = ("event", "stop", "fail", "no_retry", "checkpoint")
NOTIFY = "notify:"
#: A status rule watches an ending or a change: it may only tell (event, notify).
STATUS_ACTIONS = ("event",)
#: What a status rule may watch: statuses (``claimed`` is no change a rule sees) and
#: termination reasons.
STATUS_VALUES = tuple(s.value for s in models.Status if s is not models.Status.CLAIMED) + tuple(
    r.value for r in models.Reason if r.value not in {s.value for s in models.Status})
STREAMS = ("stdout", "stderr", "both")
#: Longest name and pattern, and most rules one run may carry.
NAME_MAX = 64
PATTERN_MAX = 500
MAX_RULES = 32
DEFAULT_PATIENCE = 3
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@-]{0,63}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PERCENT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*$")


@dataclass(frozen=True)
class Rule:
    """One checked rule. Only the fields of its condition are meaningful."""

    name: str
    when: str
    then: tuple[str, ...] = ()
    tag: str | None = None
    op: str | None = None
    value: float | None = None
    for_points: int = 1
    mode: str = "min"
    patience: int = DEFAULT_PATIENCE
    #: Absolute, or a fraction of the best value when ``min_delta_relative``.
    min_delta: float = 0.0
    min_delta_relative: bool = False
    min_step: int = 0
    after_s: float | None = None
    pattern: str | None = None
    stream: str = "both"
    status: tuple[str, ...] = ()
    max_s: float | None = None
    eta: bool = False
    #: The keys the rule was given with (``to_dict`` writes only those and the required).
    given: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def notify(self) -> list[str]:
        """The channels the rule notifies."""
        return [a[len(NOTIFY):] for a in self.then if a.startswith(NOTIFY)]

    def has(self, action: str) -> bool:
        return action in self.then

    def to_dict(self) -> dict[str, Any]:
        """The wire form (docs/rules.md): what it was given, normalised."""
        out: dict[str, Any] = {"name": self.name, "when": self.when}
        for key in CONDITIONS[self.when]:
            if key not in self.given and key not in _REQUIRED.get(self.when, ()):
                continue
            value = getattr(self, key)
            if key == "min_delta" and self.min_delta_relative:
                value = f"{_fmt(self.min_delta * 100)}%"
            elif key == "status":
                value = list(value)
            out[key] = value
        out["then"] = list(self.then)
        return out


_REQUIRED: dict[str, tuple[str, ...]] = {
    "nan": ("tag",), "threshold": ("tag", "op", "value"), "plateau": ("tag",),
    "log": ("pattern",), "status": ("status",), "runtime": ("max_s",),
}


def _fmt(x: float) -> str:
    return f"{x:g}"


def _fail(where: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"{where}: {message}", field=where)


def _number(data: Mapping[str, Any], key: str, at: str, *, positive: bool = False,
            minimum: float | None = None) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(at + key, f"expected a number, got {value!r}")
    if positive and value <= 0:
        raise _fail(at + key, f"must be above 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(at + key, f"must be at least {minimum:g}, got {value!r}")
    return float(value)


def _int(data: Mapping[str, Any], key: str, at: str, minimum: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(at + key, f"expected an integer, got {value!r}")
    if not minimum <= value <= models.INT32_MAX:
        raise _fail(at + key, f"expected an integer from {minimum} to {models.INT32_MAX}, "
                              f"got {value!r}")
    return value


def check_tag(value: Any, where: str, *, star: bool) -> str:
    """A metric tag as the store takes it, or ``*`` (any tag) where ``star`` allows it."""
    if value == "*":
        if not star:
            raise _fail(where, "'*' (any tag) is only for nan rules; name one tag")
        return "*"
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TAG_LEN:
        raise _fail(where, f"expected a metric tag of 1 to {MAX_TAG_LEN} characters")
    if any(ord(ch) < 32 for ch in value):
        raise _fail(where, "control characters are not allowed")
    return value


def check_pattern(value: Any, where: str) -> str:
    """A regular expression that compiles (with RE2, which evaluates it: docs/rules.md)."""
    if not isinstance(value, str) or not 1 <= len(value) <= PATTERN_MAX:
        raise _fail(where, f"expected a regular expression of 1 to {PATTERN_MAX} characters")
    if "\x00" in value:
        raise _fail(where, "NUL is not allowed")
    from runyard.rules import logmatch

    problem = logmatch.compile_problem(value)
    if problem:
        raise _fail(where, problem)
    return value


def _then(value: Any, when: str, at: str) -> tuple[str, ...]:
    where = at + "then"
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(where, "expected a list of actions, e.g. [\"stop\", \"notify:team\"]")
    out: list[str] = []
    for i, action in enumerate(value):
        item = f"{where}[{i}]"
        if not isinstance(action, str):
            raise _fail(item, f"expected an action name, got {action!r}")
        if action.startswith(NOTIFY):
            channel = action[len(NOTIFY):]
            if not _CHANNEL_RE.match(channel):
                raise _fail(item, "expected notify:<channel>, a channel name of 1-64 letters, "
                                  f"digits and ._- , got {action!r}")
        elif action not in ACTIONS:
            known = ", ".join((*ACTIONS, "notify:<channel>"))
            raise _fail(item, f"unknown action {action!r} (expected one of: {known})")
        elif when == "status" and action not in STATUS_ACTIONS:
            raise _fail(item, f"a status rule only tells (event, notify:<channel>); "
                              f"{action!r} acts on a run that has already changed")
        if action not in out:
            out.append(action)
    return tuple(out)


def parse_rule(data: Any, at: str = "") -> Rule:
    """Check one rule object; ``at`` prefixes every field named in errors (``rules[0].``)."""
    where = at.rstrip(".") or "rule"
    if not isinstance(data, Mapping):
        raise _fail(where, "expected a rule object {name, when, then, ...}")
    when = data.get("when")
    if when not in CONDITIONS:
        known = ", ".join(CONDITIONS)
        raise _fail(at + "when", f"unknown condition {when!r} (expected one of: {known})")
    allowed = {"name", "when", "then", *CONDITIONS[when]}
    for key in data:
        if key not in allowed:
            raise _fail(f"{at}{key}", f"unknown key for a {when!r} rule (it takes: "
                                      f"{', '.join(sorted(allowed))})")
    for key in _REQUIRED.get(when, ()):
        if key not in data and not (when == "nan" and key == "tag"):
            raise _fail(at + key, f"required for a {when!r} rule")
    kw: dict[str, Any] = {"when": when}
    if "tag" in CONDITIONS[when]:
        kw["tag"] = check_tag(data.get("tag", "*" if when == "nan" else None), at + "tag",
                              star=when == "nan")
    name = data.get("name")
    if name is None:
        name = default_name(when, kw.get("tag"))
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(at + "name", f"expected 1-{NAME_MAX} letters, digits and ._:+@- (not "
                                 f"starting with punctuation), got {name!r}")
    kw["name"] = name
    kw["then"] = _then(data.get("then"), when, at)
    if "op" in data:
        if data["op"] not in OPS:
            raise _fail(at + "op", f"expected one of {', '.join(OPS)}, got {data['op']!r}")
        kw["op"] = data["op"]
    if "value" in data:
        kw["value"] = _number(data, "value", at)
    if "for_points" in data:
        kw["for_points"] = _int(data, "for_points", at, 1)
    if "mode" in data:
        if data["mode"] not in ("min", "max"):
            raise _fail(at + "mode", f"expected min or max, got {data['mode']!r}")
        kw["mode"] = data["mode"]
    if "patience" in data:
        kw["patience"] = _int(data, "patience", at, 0)
    if "min_delta" in data:
        kw["min_delta"], kw["min_delta_relative"] = parse_min_delta(data["min_delta"],
                                                                    at + "min_delta")
    if "min_step" in data:
        kw["min_step"] = _int(data, "min_step", at, 0)
    if "after_s" in data and data["after_s"] is not None:
        kw["after_s"] = _number(data, "after_s", at, positive=True)
    if "pattern" in data:
        kw["pattern"] = check_pattern(data["pattern"], at + "pattern")
    if "stream" in data:
        if data["stream"] not in STREAMS:
            raise _fail(at + "stream", f"expected one of {', '.join(STREAMS)}, "
                                       f"got {data['stream']!r}")
        kw["stream"] = data["stream"]
    if "status" in data:
        kw["status"] = _statuses(data["status"], at + "status")
    if "max_s" in data:
        kw["max_s"] = _number(data, "max_s", at, positive=True)
    if "eta" in data:
        if not isinstance(data["eta"], bool):
            raise _fail(at + "eta", f"expected true or false, got {data['eta']!r}")
        kw["eta"] = data["eta"]
    return Rule(**kw, given=frozenset(data))


def parse_min_delta(value: Any, where: str) -> tuple[float, bool]:
    """``(delta, relative)``: a number is absolute, ``"1%"`` a fraction of the best value."""
    if isinstance(value, str):
        m = _PERCENT_RE.match(value)
        if not m or not 0 <= float(m.group(1)) < 100:
            raise _fail(where, f"expected a number or a percentage below 100% such as "
                               f"\"1%\", got {value!r}")
        return float(m.group(1)) / 100, True
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise _fail(where, f"expected a number >= 0 or a percentage such as \"1%\", "
                           f"got {value!r}")
    return float(value), False


def _statuses(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value:
        raise _fail(where, "expected a non-empty list of statuses or termination reasons")
    out: list[str] = []
    for i, item in enumerate(value):
        if item not in STATUS_VALUES:
            raise _fail(f"{where}[{i}]", f"unknown status or reason {item!r} (expected one "
                                         f"of: {', '.join(STATUS_VALUES)})")
        if item not in out:
            out.append(item)
    return tuple(out)


def default_name(when: str, tag: str | None) -> str:
    """The name of a rule given without one: its condition, and its tag when it has one."""
    if tag is None:
        return when
    tail = "any" if tag == "*" else re.sub(r"[^A-Za-z0-9._:+@-]", "_", tag)
    return f"{when}-{tail}"[:NAME_MAX]


def parse_rules(value: Any, at: str = "rules") -> list[Rule]:
    """A list of rules (``rules`` of a run or a blueprint); names must differ."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(at, "expected a list of rule objects")
    if len(value) > MAX_RULES:
        raise _fail(at, f"at most {MAX_RULES} rules, got {len(value)}")
    out: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        rule = parse_rule(item, f"{at}[{i}].")
        if rule.name in seen:
            raise _fail(f"{at}[{i}].name", f"duplicate rule name {rule.name!r} (also "
                                            f"{at}[{seen[rule.name]}]); give each a name")
        seen[rule.name] = i
        out.append(rule)
    return out


def from_stored(data: Mapping[str, Any]) -> Rule:
    """A rule as stored (checked when it entered), less the ``source`` the run keeps."""
    return parse_rule({k: v for k, v in data.items() if k != "source"})
