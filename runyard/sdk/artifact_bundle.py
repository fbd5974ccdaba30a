"""A local run's artifact directory packed for archiving in the server's store (docs/sdk.md,
"Archiving").

Packed as an agent packs its runs' (:func:`runyard.artifacts.archive.bundle_dir`: one
deterministic ``tar.zst``) and uploaded under the same name and kind, through the same
artifact routes, so the server archives it the same way (:mod:`runyard.archiving`). Packing
needs zstandard, which comes with the ``server`` extra; the SDK's base install does without.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from runyard import errors
from runyard.artifacts.names import BUNDLE_KIND, BUNDLE_NAME
from runyard.sdk.checkpoint_files import sha256_file

__all__ = ["BUNDLE_KIND", "BUNDLE_NAME", "Bundle", "available", "import_upload",
           "leased_upload", "pack", "url"]


@dataclass(frozen=True, slots=True)
class Bundle:
    """The packed directory: a temporary file, its sha256 and size."""

    file: Path
    sha256: str
    size: int

    def cleanup(self) -> None:
        try:
            os.unlink(self.file)
        except OSError:
            pass


def available() -> bool:
    """Whether this installation can pack a bundle (zstandard is installed)."""
    return importlib.util.find_spec("zstandard") is not None


def pack(directory: Path) -> Bundle | None:
    """``directory`` as a bundle next to it (the caller calls :meth:`Bundle.cleanup`); None
    when it holds nothing. Files removed while it is packed are left out.

    Raises :class:`errors.NotFound` when the directory is missing and
    :class:`errors.ConfigError` when zstandard is not installed.
    """
    if not directory.is_dir():
        raise errors.NotFound(f"the artifact directory {directory} does not exist")
    if not any(directory.iterdir()):
        return None
    if not available():
        raise errors.ConfigError("archiving needs zstandard (pip install zstandard, or "
                                 "runyard[server])")
    from runyard.artifacts import archive

    file = archive.bundle_dir(directory, dest_dir=directory.parent)
    try:
        sha, size = sha256_file(file)
    except BaseException:
        file.unlink(missing_ok=True)
        raise
    return Bundle(file, sha, size)


def leased_upload(run_id: str, attempt_id: str) -> tuple[str, dict[str, str]]:
    """Path and query of a running attempt's bundle upload (``PUT``, with the lease), as an
    agent's."""
    return (f"/v1/runs/{run_id}/artifacts/{BUNDLE_NAME}",
            {"attempt_id": attempt_id, "kind": BUNDLE_KIND})


def import_upload(run_id: str, attempt: int) -> tuple[str, dict[str, str]]:
    """Path and query of an ended local run's bundle upload (``PUT``, by its owner, no
    lease)."""
    return (f"/v1/runs/{run_id}/import/artifacts/{BUNDLE_NAME}",
            {"attempt": str(attempt), "kind": BUNDLE_KIND})


def url(upload: tuple[str, dict[str, str]]) -> str:
    """An upload's path with its query."""
    path, query = upload
    return f"{path}?{urlencode(query)}"
