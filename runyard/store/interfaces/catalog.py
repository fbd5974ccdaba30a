"""What operators define: blueprints, API tokens, one-time sign-in codes and the manifest's job
keys (docs/manifest.md, docs/security.md); implemented in ``runyard.store.catalog``."""

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
    def create_signin_code(self, code_hash: str, name: str, role: str, *, created_at: float,
                           expires_at: float, forget_before: float) -> None:
        """Store a one-time sign-in code by its hash, for a token of ``role`` named after
        ``name``; codes that expired before ``forget_before`` are deleted."""

    @abc.abstractmethod
    def signin_code(self, code_hash: str) -> Row | None:
        """The sign-in code with this hash, used or not, or None."""

    @abc.abstractmethod
    def take_signin_code(self, code_hash: str, *, now: float, token_name: str
                         ) -> tuple[Row | None, bool]:
        """Mark the code used at ``now`` for the token ``token_name`` when it is unused and
        unexpired. Returns the code's row as it was found (None: no such code) and whether
        this call took it: of concurrent takers, one at most."""

    @abc.abstractmethod
    def job_keys(self, source: str | None = None) -> dict[str, Row]: ...
