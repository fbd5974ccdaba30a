"""Checks of the values users send, one field at a time: names, host ids, tags, globs, and
numbers within what the store's columns hold. Each refusal is a
:class:`runyard.errors.ValidationError` naming the field's path (a 422 at the API).

The typed readers (``read_number``, ``read_globs``...) take a field out of a user's mapping,
for the value objects of :mod:`runyard.resources`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from runyard import errors

#: The integers the store's columns hold: 64 bits for steps, sizes and offsets, 32 bits
#: (PostgreSQL's ``integer``) for counts, priorities, exit codes and attempt numbers. Larger
#: ones are refused at the edge, naming their field, instead of overflowing a driver.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: A run's, project's, token's or artifact's name; also the looser rule a stored host id is
#: read back with.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,199}$")
#: A host id: a name without ``+@/``, so it is safe in a URL path and never looks like a
#: local run's host (:func:`local_host`).
_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
#: What a run started by hand records before its machine's host id.
LOCAL_HOST_PREFIX = "local/"


def validate_host_id(value: Any, field: str) -> str:
    """A worker's or a local run's host id (docs/scheduling.md)."""
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise errors.ValidationError(
            f"{field}: expected a host id of 1-200 letters, digits and ._:- (not starting "
            f"with punctuation), got {value!r}", field=field)
    return value


def local_host(host_id: str) -> str:
    """The host a run started by hand on ``host_id`` records. Local runs live in a namespace of
    their own: the ``/`` no worker's host id holds keeps them out of every worker's count of
    active attempts, so they never take a worker's slots (docs/sdk.md)."""
    return LOCAL_HOST_PREFIX + validate_host_id(host_id, "host_id")


def validate_name(value: Any, field: str) -> str:
    """A run, project, token or artifact-safe name."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise errors.ValidationError(
            f"{field}: expected 1-200 characters of letters, digits and ._:+@/- "
            f"(not starting with punctuation), got {value!r}",
            field=field,
        )
    return value


_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@/=-]{0,63}$")
#: Most tags one run may carry.
MAX_TAGS = 32


def validate_tags(value: Any, field: str = "tags") -> list[str]:
    """A run's tags: at most :data:`MAX_TAGS`, each 1-64 letters, digits and ``._:+@/=-``
    (no quotes or commas: filters match them in the stored text); repeats dropped."""
    if not isinstance(value, list | tuple):
        raise errors.ValidationError(f"{field}: expected a list of tags", field=field)
    out = list(dict.fromkeys(value))
    if len(out) > MAX_TAGS:
        raise errors.ValidationError(f"{field}: at most {MAX_TAGS} tags, got {len(out)}",
                                     field=field)
    for i, tag in enumerate(out):
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise errors.ValidationError(
                f"{field}[{i}]: expected 1-64 letters, digits and ._:+@/=- (not starting "
                f"with punctuation), got {tag!r}", field=f"{field}[{i}]")
    return out


def read_number(data: Mapping[str, Any], key: str, prefix: str, default: float, *,
                integer: bool = False) -> Any:
    """``data[key]`` (``default`` when absent): a finite number >= 0; with ``integer``, a
    whole one below 2**31, returned as an ``int``."""
    value = data.get(key, default)
    path = f"{prefix}{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise errors.ValidationError(f"{path}: expected a number, got {value!r}", field=path)
    if integer and not float(value).is_integer():
        raise errors.ValidationError(f"{path}: expected an integer, got {value!r}", field=path)
    if value < 0:
        raise errors.ValidationError(f"{path}: must not be negative, got {value!r}", field=path)
    if integer and value > INT32_MAX:
        raise errors.ValidationError(f"{path}: must be below 2**31, got {value!r}", field=path)
    return int(value) if integer else float(value)


def read_bool(data: Mapping[str, Any], key: str, prefix: str) -> bool:
    """``data[key]`` (false when absent): true or false, nothing truthy."""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise errors.ValidationError(
            f"{prefix}{key}: expected true or false, got {value!r}", field=f"{prefix}{key}"
        )
    return value


def validate_glob(pattern: Any, field: str) -> str:
    """Check a host-policy or allowed-hosts glob; malformed ones are refused, not ignored."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
        raise errors.ValidationError(
            f"{field}: expected a non-empty glob string, got {pattern!r}", field=field
        )
    if any(ch in pattern for ch in "\x00\n\r"):
        raise errors.ValidationError(f"{field}: control character in glob {pattern!r}", field=field)
    depth = 0
    for ch in pattern:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        raise errors.ValidationError(
            f"{field}: malformed glob {pattern!r} (unclosed '[')", field=field
        )
    return pattern


def read_globs(data: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...]:
    """``data[key]`` (none when absent): a list of globs, each checked by
    :func:`validate_glob`."""
    value = data.get(key, [])
    path = f"{prefix}{key}"
    if not isinstance(value, list | tuple):
        raise errors.ValidationError(f"{path}: expected a list of globs", field=path)
    return tuple(validate_glob(p, f"{path}[{i}]") for i, p in enumerate(value))


def read_labels(data: Mapping[str, Any], key: str, prefix: str) -> dict[str, str]:
    """``data[key]`` (none when absent): a table of scalar values, kept as text."""
    value = data.get(key, {})
    path = f"{prefix}{key}"
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in value.items()
    ):
        raise errors.ValidationError(f"{path}: expected a table of key = value", field=path)
    return {k: str(v) for k, v in value.items()}


def reject_unknown(data: Mapping[str, Any], known: Iterable[str], prefix: str) -> None:
    """Refuse the first key of ``data`` (in sorted order) that is not ``known``."""
    extra = sorted(set(data) - set(known))
    if extra:
        raise errors.ValidationError(
            f"{prefix}{extra[0]}: unknown key", field=f"{prefix}{extra[0]}"
        )
