"""Which hosts a worker token may act as (docs/security.md, "Enrolling workers").

A worker token is bound to host ids or glob patterns (``fnmatch``, case-sensitive, as
``allowed_hosts``), chosen by the operator when the token is created; a token created
without one binds itself to the first host id it claims as (trust on first use). The
binding is stored as one comma-separated string: a comma is in no host id and no pattern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from runyard import errors

#: Patterns one token may name.
MAX_PATTERNS = 64
#: Hosts a token bound by a pattern may have registered at once, unless it sets its own cap
#: (``--max-hosts``) or the server another default (``--max-hosts-per-token``).
MAX_HOSTS_PER_TOKEN = 100
#: Workers a server registers in all (``--max-workers``).
MAX_WORKERS = 10_000
#: Largest per-token cap an operator may set.
MAX_HOSTS_LIMIT = 1_000_000

SEP = ","


@dataclass(frozen=True)
class Limits:
    """Caps on registrations (server options ``--max-hosts-per-token``, ``--max-workers``)."""

    #: Hosts one worker token may have registered at once, when it sets no cap of its own.
    max_hosts_per_token: int = MAX_HOSTS_PER_TOKEN
    #: Workers registered in all.
    max_workers: int = MAX_WORKERS

#: A host id's characters (models.validate_host_id) plus the glob's ``*?[]!``.
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._:*?\[\]!-]{1,200}$")
_GLOB = frozenset("*?[")


def parse_hosts(value: Any, field: str = "hosts") -> tuple[str, ...]:
    """The patterns of a binding as sent (a list of host ids or globs), checked; a 422
    naming ``field`` otherwise."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise errors.ValidationError(f"{field}: expected a list of host ids or patterns",
                                     field=field)
    if not value:
        raise errors.ValidationError(f"{field}: name at least one host id or pattern",
                                     field=field)
    if len(value) > MAX_PATTERNS:
        raise errors.ValidationError(f"{field}: at most {MAX_PATTERNS} host ids or patterns",
                                     field=field)
    out: list[str] = []
    for i, p in enumerate(value):
        if not isinstance(p, str) or not _PATTERN_RE.match(p):
            raise errors.ValidationError(
                f"{field}[{i}]: expected a host id or a glob of 1-200 letters, digits, "
                f"._:- and *?[]!, got {p!r}", field=f"{field}[{i}]")
        if p not in out:
            out.append(p)
    return tuple(out)


def encode(patterns: Sequence[str] | None) -> str | None:
    """The stored form of a binding (None: not bound yet)."""
    return SEP.join(patterns) if patterns is not None else None


def decode(stored: str | None) -> tuple[str, ...] | None:
    """A binding as stored, back as patterns (None: not bound yet)."""
    return tuple(stored.split(SEP)) if stored else None


def allows(patterns: Sequence[str], host_id: str) -> bool:
    """True when ``host_id`` matches one of the binding's patterns."""
    return any(fnmatchcase(host_id, p) for p in patterns)


def is_pattern(patterns: Sequence[str]) -> bool:
    """True when the binding may match more than the host ids it names (a glob in it)."""
    return any(_GLOB & set(p) for p in patterns)


def describe(patterns: Sequence[str]) -> str:
    return ", ".join(repr(p) for p in patterns)


def refuse_host(token: str, patterns: Sequence[str], host_id: str) -> errors.Forbidden:
    """The 403 for a worker token that acts as a host outside its binding."""
    return errors.Forbidden(
        f"worker token {token!r} is bound to host {describe(patterns)} and may not act as "
        f"host {host_id!r}; give each host its own token (runyard token create --role worker "
        f"--host HOST) or bind one to a pattern (--hosts 'gpu-*')",
        field="host_id")
