"""The index of content-addressed blobs and what refers to them: artifacts and checkpoints
(docs/metrics-and-artifacts.md); implemented in ``runyard.store.blobs``. The bytes are the
blob store's (:mod:`runyard.artifacts`)."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from runyard.store.interfaces.rows import Row


class BlobsStore(abc.ABC):
    """Blobs, artifacts and checkpoints."""

    @abc.abstractmethod
    def add_blob(self, sha256: str, size: int) -> Row: ...

    @abc.abstractmethod
    def get_blob(self, sha256: str) -> Row | None: ...

    @abc.abstractmethod
    def delete_blob(self, sha256: str) -> bool: ...

    @abc.abstractmethod
    def add_artifact(self, run_id: str, attempt: int, name: str, kind: str, size: int,
                     sha256: str) -> Row: ...

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list[Row]: ...

    @abc.abstractmethod
    def unreferenced_blob_shas(self, candidates: Sequence[str]) -> list[str]: ...

    @abc.abstractmethod
    def add_checkpoint(self, run_id: str, attempt: int, step: int, status: str,
                       name: str | None = None, sha256: str | None = None,
                       size: int | None = None, metrics: Mapping[str, Any] | None = None
                       ) -> Row: ...

    @abc.abstractmethod
    def list_checkpoints(self, run_id: str) -> list[Row]: ...

    @abc.abstractmethod
    def find_checkpoints(self, run_id: str, *, steps: Sequence[int] = (),
                         statuses: Sequence[str] = (), created_after: float | None = None,
                         created_before: float | None = None,
                         sort: str | Sequence[str] | None = None,
                         after: Sequence[Any] | None = None, limit: int = 1000) -> list[Row]:
        """Filtered, sorted keyset pages of a run's checkpoints (``GET .../checkpoints``)."""

    @abc.abstractmethod
    def delete_checkpoints(self, run_id: str, ids: Sequence[int]) -> list[str]: ...
