"""Which rules apply to a run (docs/rules.md), read through a short cache.

A run's effective rules are, by name, the most specific of: its own and its blueprint's
(stored on the run at submit, never changed), its project's, the server's. A project or
server rule added by an operator watches every run of its scope; one a user added watches
only that user's runs. The stored rules are read at most once per :data:`CACHE_S` per server
process, so a rule added or removed takes effect on each server within that time; a run's
own rules are parsed once and kept (they cannot change).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runyard.rules import spec
from runyard.store.base import Row, Store

#: Seconds a server process keeps the stored project and server rules before reading them.
CACHE_S = 5.0
#: Runs whose own parsed rules are kept.
RUNS_KEPT = 10_000
#: Most specific first: a rule of a source earlier here replaces one of the same name after.
SOURCES = ("run", "blueprint", "project", "server")


@dataclass(frozen=True)
class Effective:
    """A rule as it applies to a run: where it comes from, and the key of its state."""

    rule: spec.Rule
    source: str
    key: str
    #: The stored rule's id (project and server rules).
    rule_id: int | None = None


@dataclass(frozen=True)
class RunRules:
    """A run's effective rules, grouped the way the feeds ask for them."""

    all: tuple[Effective, ...]
    metric: tuple[Effective, ...]
    log: tuple[Effective, ...]
    status: tuple[Effective, ...]
    timed: tuple[Effective, ...]


EMPTY = RunRules((), (), (), (), ())


def group(rules: list[Effective]) -> RunRules:
    if not rules:
        return EMPTY
    return RunRules(
        tuple(rules), tuple(e for e in rules if e.rule.when in spec.METRIC),
        tuple(e for e in rules if e.rule.when == "log"),
        tuple(e for e in rules if e.rule.when == "status"),
        tuple(e for e in rules if e.rule.when in spec.TIMED))


def stored_effective(row: Mapping[str, Any]) -> Effective:
    """A ``rules`` table row as an effective rule."""
    source = "project" if row["project"] else "server"
    return Effective(spec.from_stored(row["spec"]), source, f"{source}:{row['id']}",
                     int(row["id"]))


class RuleBook:
    """The rules of each run, cached (see the module docstring)."""

    def __init__(self, store: Store, *, cache_s: float = CACHE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cache_s = cache_s
        self.clock = clock
        self._lock = threading.Lock()
        self._stored: tuple[float, dict[str, list[tuple[str | None, Effective]]]] | None = None
        self._runs: OrderedDict[str, list[Effective]] = OrderedDict()

    def forget(self) -> None:
        """Read the stored rules again at the next use (after this process changed them)."""
        with self._lock:
            self._stored = None

    def _scopes(self) -> dict[str, list[tuple[str | None, Effective]]]:
        now = self.clock()
        with self._lock:
            cached = self._stored
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        scopes: dict[str, list[tuple[str | None, Effective]]] = {}
        for row in self.store.list_rules():
            try:
                eff = stored_effective(row)
            except Exception:  # a row no release can read any more must not stop the rest
                continue
            scopes.setdefault(row["project"], []).append((row["owner"], eff))
        with self._lock:
            self._stored = (now, scopes)
        return scopes

    def _own(self, run: Row) -> list[Effective]:
        run_id = run["id"]
        with self._lock:
            kept = self._runs.get(run_id)
            if kept is not None:
                self._runs.move_to_end(run_id)
                return kept
        own: list[Effective] = []
        for data in run.get("rules") or ():
            source = data.get("source", "run") if isinstance(data, Mapping) else "run"
            try:
                rule = spec.from_stored(data)
            except Exception:  # checked at submit; a rule a later release refuses is skipped
                continue
            own.append(Effective(rule, source, f"{source}:{rule.name}"))
        with self._lock:
            self._runs[run_id] = own
            while len(self._runs) > RUNS_KEPT:
                self._runs.popitem(last=False)
        return own

    def for_run(self, run: Row) -> RunRules:
        """The effective rules of ``run`` (a row with ``id``, ``project``, ``owner`` and
        ``rules``)."""
        scopes = self._scopes()
        own = self._own(run) if run.get("rules") else []
        if not own and not scopes:
            return EMPTY
        owner = run.get("owner")
        chosen: dict[str, Effective] = {}
        for eff in own:
            chosen.setdefault(eff.rule.name, eff)
        for scope in (run.get("project") or "", ""):
            for rule_owner, eff in scopes.get(scope, ()):
                if rule_owner is None or rule_owner == owner:
                    chosen.setdefault(eff.rule.name, eff)
            if scope == "":
                break
        order = {s: i for i, s in enumerate(SOURCES)}
        return group(sorted(chosen.values(), key=lambda e: (order[e.source], e.key)))

    def timed_scopes(self) -> set[str]:
        """The projects ("" for the server) holding a stalled or runtime rule."""
        return {scope for scope, items in self._scopes().items()
                if any(e.rule.when in spec.TIMED for _, e in items)}
