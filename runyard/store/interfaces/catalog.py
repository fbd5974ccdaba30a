"""What operators define: blueprints, API tokens and the manifest's job keys
(docs/manifest.md, docs/security.md); implemented in ``runyard.store.catalog``."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from runyard.store.interfaces.rows import Row


class CatalogStore(abc.ABC):
    """Blueprints, tokens and job keys."""

    @abc.abstractmethod
    def put_blueprint(self, name: str, command: Sequence[str],
                      config_schema: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                      source: str | None = None) -> Row: ...

    @abc.abstractmethod
    def list_blueprints(self) -> list[Row]: ...

    @abc.abstractmethod
    def get_blueprint(self, name: str) -> Row | None: ...

    @abc.abstractmethod
    def create_token(self, name: str, role: str, token_hash: str, *, hosts: str | None = None,
                     max_hosts: int | None = None) -> Row:
        """Store a token by its hash; ``hosts`` is a worker token's binding as stored
        (:func:`runyard.enrolment.encode`), ``max_hosts`` its cap of registered hosts."""

    @abc.abstractmethod
    def get_token(self, name: str) -> Row | None:
        """The unrevoked token of that name (without its hash), or None."""

    @abc.abstractmethod
    def token_by_hash(self, token_hash: str) -> Row | None: ...

    @abc.abstractmethod
    def list_tokens(self) -> list[Row]: ...

    @abc.abstractmethod
    def revoke_token(self, name: str) -> bool: ...

    @abc.abstractmethod
    def touch_token(self, name: str, at: float) -> None: ...

    @abc.abstractmethod
    def count_tokens(self) -> int: ...

    @abc.abstractmethod
    def job_keys(self, source: str | None = None) -> dict[str, Row]: ...
