"""Content-addressed artifact blobs, archive bundles and checkpoint retention.

The index of artifacts (which run and attempt own which blob) lives in the database
store; this package is the blob side, shared by the server and the agent. Optional
dependencies (fsspec, zstandard) are imported only when a feature needs them.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from runyard import errors
from runyard.artifacts.archive import bundle_dir, extract_archive
from runyard.artifacts.base import BlobInfo, BlobStore, validate_sha256
from runyard.artifacts.local import LocalBlobStore
from runyard.artifacts.names import validate_artifact_name
from runyard.artifacts.retention import plan_retention, unreferenced

__all__ = [
    "BlobInfo",
    "BlobStore",
    "LocalBlobStore",
    "bundle_dir",
    "extract_archive",
    "open_blob_store",
    "plan_retention",
    "unreferenced",
    "validate_artifact_name",
    "validate_sha256",
]


def open_blob_store(url_or_path: str | os.PathLike[str], **storage_options: Any) -> BlobStore:
    """The blob store at ``url_or_path``: a local directory (plain path or ``file://``),
    or any other URL through fsspec (``s3://bucket/prefix``, ``gcs://...``, ``memory://...``).

    ``storage_options`` go to the fsspec filesystem (``endpoint_url``, ``key``...).
    """
    location = os.fspath(url_or_path)
    if not location.strip():
        raise errors.ValidationError("artifacts: a directory or URL is required", field="artifacts")
    if "://" not in location:
        return LocalBlobStore(location)
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise errors.ValidationError(
                f"artifacts: file URLs must name a local path, got {location!r}", field="artifacts"
            )
        return LocalBlobStore(unquote(parts.path))
    try:
        from runyard.artifacts.remote import FsspecBlobStore
    except ImportError as exc:  # pragma: no cover - fsspec ships with the server extra
        raise errors.ConfigError(
            "artifacts: URLs other than file:// need fsspec (pip install 'runyard[server]')"
        ) from exc
    try:
        return FsspecBlobStore(location, **storage_options)
    except (ImportError, ValueError) as exc:
        # fsspec raises these for an unknown scheme or a backend that is not installed.
        raise errors.ConfigError(f"artifacts: cannot open {location!r}: {exc}") from exc
