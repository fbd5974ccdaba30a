"""The compact form of a rule, for a person at a terminal (docs/rules.md)::

    nan loss -> stop,no_retry
    threshold loss > 10 for=3 -> stop
    plateau val_loss patience=5 min_delta=0.001 -> stop,notify:team
    log "CUDA out of memory" -> no_retry
    status completed,failed -> notify:team
    stalled after=10m -> notify:team
    runtime 24h eta -> stop

The condition first, then its arguments (words and ``key=value``), then ``->`` and the
actions separated by commas. ``name=NAME`` may go anywhere; any key of the JSON form is
accepted as ``key=value`` too (``for_points=3``, ``after_s=600``). Durations take ``s``,
``m``, ``h`` or ``d``. :func:`parse` returns the JSON form, checked by :mod:`spec`.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from runyard import errors
from runyard.rules import spec

#: Short keys the compact form takes, and the JSON key each stands for.
ALIASES = {"for": "for_points", "after": "after_s", "max": "max_s", "delta": "min_delta",
           "warmup": "min_step"}
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_USAGE = ("write CONDITION [ARGS] [-> ACTION,ACTION], e.g. 'plateau val_loss patience=5 -> "
          "stop' or 'nan loss -> stop,no_retry'")


def _error(text: str, message: str) -> errors.ValidationError:
    return errors.ValidationError(f"rule {text!r}: {message}", field="rule")


def duration(value: str, text: str, key: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h``, ``1d`` as seconds."""
    m = _DURATION.match(value.strip())
    if not m:
        raise _error(text, f"{key}: expected a duration such as 600, 10m, 2h or 1d, "
                           f"got {value!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _scalar(value: str) -> Any:
    """A ``key=value`` value as JSON would have it: an int, a float, a bool or text."""
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def parse(text: str) -> dict[str, Any]:
    """The rule object ``text`` stands for (checked: errors name the part that is wrong)."""
    if not isinstance(text, str) or not text.strip():
        raise _error(str(text), f"empty; {_USAGE}")
    head, arrow, tail = text.partition("->")
    try:
        words = shlex.split(head)
    except ValueError as exc:
        raise _error(text, f"{exc} (close the quotes around a pattern)") from None
    if not words:
        raise _error(text, f"no condition before '->'; {_USAGE}")
    when = words[0].lower()
    if when not in spec.CONDITIONS:
        raise _error(text, f"unknown condition {words[0]!r} (expected one of: "
                           f"{', '.join(spec.CONDITIONS)})")
    rule: dict[str, Any] = {"when": when}
    plain: list[str] = []
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq and key and re.fullmatch(r"[a-z_]+", key):
            key = ALIASES.get(key, key)
            if key in ("after_s", "max_s"):
                rule[key] = duration(value, text, key)
            elif key == "min_delta":
                rule[key] = value if value.endswith("%") else _scalar(value)
            elif key == "name" or key == "pattern" or key == "tag":
                rule[key] = value
            elif key == "status":
                rule[key] = [s for s in value.split(",") if s]
            else:
                rule[key] = _scalar(value)
        else:
            plain.append(word)
    _positional(when, plain, rule, text)
    if arrow:
        actions = [a.strip() for a in tail.split(",")]
        if not all(actions):
            raise _error(text, "after '->': expected actions separated by commas, such as "
                               "'stop,notify:team'")
        rule["then"] = actions
    try:
        spec.parse_rule(rule)
    except errors.ValidationError as exc:  # it names the JSON key: the compact form's too
        raise _error(text, exc.message) from None
    return rule


def _positional(when: str, words: list[str], rule: dict[str, Any], text: str) -> None:
    """The words that are not ``key=value``, by condition."""
    def too_many(expected: str) -> errors.ValidationError:
        return _error(text, f"unexpected {' '.join(words)!r}; a {when} rule takes {expected}")

    if when in ("nan", "plateau"):
        if len(words) > 1:
            raise too_many("one TAG and key=value options")
        if words:
            rule["tag"] = words[0]
    elif when == "threshold":
        if len(words) == 1:  # written without spaces: loss>10
            m = re.fullmatch(r"(.+?)(<=|>=|<|>)(.+)", words[0])
            words = [m.group(1), m.group(2), m.group(3)] if m else words
        if len(words) != 3 or words[1] not in spec.OPS:
            raise _error(text, "a threshold rule takes TAG OP VALUE, such as 'loss > 10' "
                               f"(OP one of {' '.join(spec.OPS)})")
        rule["tag"], rule["op"] = words[0], words[1]
        value = _scalar(words[2])
        if isinstance(value, str) or isinstance(value, bool):
            raise _error(text, f"value: expected a number, got {words[2]!r}")
        rule["value"] = value
    elif when == "log":
        if len(words) != 1 and "pattern" not in rule:
            raise _error(text, "a log rule takes one PATTERN; quote it: log \"CUDA out of "
                               "memory\"")
        if words:
            rule["pattern"] = words[0]
    elif when == "status":
        if len(words) > 1:
            raise too_many("STATUS,STATUS,... (no spaces)")
        if words:
            rule["status"] = [s for s in words[0].split(",") if s]
    elif when == "stalled":
        if len(words) > 1:
            raise too_many("an optional duration (after=10m)")
        if words:
            rule["after_s"] = duration(words[0], text, "after_s")
    elif when == "runtime":
        rest = [w for w in words if w != "eta"]
        if len(words) - len(rest):
            rule["eta"] = True
        if len(rest) > 1:
            raise too_many("a MAX duration and optionally 'eta'")
        if rest:
            rule["max_s"] = duration(rest[0], text, "max_s")
