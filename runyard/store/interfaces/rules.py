"""Rules and their per-run state (docs/rules.md); implemented in
``runyard.store.rulestore``."""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from runyard.store.interfaces.rows import Row


class RulesStore(abc.ABC):
    """Rules, their states, and the runs they watch."""

    @abc.abstractmethod
    def add_rule(self, project: str, name: str, spec: Mapping[str, Any], *,
                 owner: str | None, created_by: str) -> Row: ...

    @abc.abstractmethod
    def list_rules(self, project: str | None = None) -> list[Row]: ...

    @abc.abstractmethod
    def get_rule(self, rule_id: int) -> Row | None: ...

    @abc.abstractmethod
    def delete_rule(self, rule_id: int) -> bool: ...

    @abc.abstractmethod
    def rule_states(self, run_id: str) -> dict[str, Row]:
        """A run's rule states by rule key."""

    @abc.abstractmethod
    def runs_with_rules(self, statuses: Sequence[str], projects: Collection[str],
                        limit: int = 500) -> list[Row]:
        """Runs of ``statuses`` with rules of their own or of a project in ``projects``
        ("" among them: every run)."""
