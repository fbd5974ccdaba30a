"""A blob store on any fsspec filesystem: ``s3://``, ``gcs://``, ``memory://``...

Object stores have no atomic rename. An upload goes to a temporary key first, is
verified, then moved to ``ab/cd/<sha256>`` (on S3 a server-side copy, which makes the
object appear whole). Two writers of the same blob may both copy; they write identical
bytes, so the race is tolerated rather than prevented.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

import fsspec

from runyard.artifacts import base

TEMP_DIR = ".tmp"


class FsspecBlobStore(base.BlobStore):
    """Blobs under ``<url>/ab/cd/<sha256>`` on the filesystem fsspec picks for ``url``."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        self.root_url: str = fs.unstrip_protocol(self.root)

    def _path(self, sha256: str) -> str:
        return f"{self.root}/{base.blob_key(sha256)}"

    def put(
        self,
        stream: base.Source,
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> base.BlobInfo:
        base.check_put_args(expected_sha256, max_size)
        if expected_sha256 is not None and self.exists(expected_sha256):
            # Still read and hash the body: the stated digest is verified, never trusted.
            actual, size = base.copy_hashed(stream, base.discard, max_size)
            base.check_digest(expected_sha256, actual)
            return base.BlobInfo(actual, size, created=False)

        temp = f"{self.root}/{TEMP_DIR}/{uuid.uuid4().hex}"
        created = False
        try:
            # fsspec files commit what they hold on close, even after an error, so a
            # refused upload is closed and then removed in ``finally``.
            with self.fs.open(temp, "wb") as fh:
                actual, size = base.copy_hashed(stream, fh.write, max_size)
                base.check_digest(expected_sha256, actual)
            final = self._path(actual)
            created = not self._exists(final) and self._move(temp, final)
        finally:
            if not created:  # a successful move already took the temporary key away
                self._remove_quietly(temp)
        return base.BlobInfo(actual, size, created=created)

    def _move(self, temp: str, final: str) -> bool:
        try:
            self.fs.mv(temp, final)
        except OSError:
            # Another writer may have moved identical bytes there meanwhile.
            if self._exists(final):
                return False
            raise
        return True

    def _remove_quietly(self, path: str) -> None:
        self.fs.invalidate_cache(path)
        with contextlib.suppress(FileNotFoundError):
            if self.fs.exists(path):
                self.fs.rm_file(path)

    def _exists(self, path: str) -> bool:
        # Other processes write to the same store; never answer from a listing cache.
        self.fs.invalidate_cache(path)
        return bool(self.fs.isfile(path))

    def exists(self, sha256: str) -> bool:
        return self._exists(self._path(sha256))

    def size(self, sha256: str) -> int:
        path = self._path(sha256)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise base.not_found(sha256) from None
        return int(info["size"])

    def open(self, sha256: str) -> BinaryIO:
        path = self._path(sha256)
        self.fs.invalidate_cache(path)
        try:
            return cast(BinaryIO, self.fs.open(path, "rb"))
        except FileNotFoundError:
            raise base.not_found(sha256) from None

    def delete(self, sha256: str) -> bool:
        path = self._path(sha256)
        if not self._exists(path):
            return False
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            return False
        finally:
            self.fs.invalidate_cache(path)
        return True

    def purge_temp(self, older_than_s: float = base.STALE_TEMP_S) -> int:
        temp_dir = f"{self.root}/{TEMP_DIR}"
        self.fs.invalidate_cache(temp_dir)
        try:
            paths = self.fs.find(temp_dir)
        except FileNotFoundError:
            return 0
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        removed = 0
        for path in paths:
            try:
                modified = self.fs.modified(path)
            except (FileNotFoundError, NotImplementedError):
                continue  # gone meanwhile, or a filesystem that cannot say: keep it
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            if modified <= cutoff:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
                    removed += 1
        self.fs.invalidate_cache(temp_dir)
        return removed

    def url(self, sha256: str) -> str:
        return str(self.fs.unstrip_protocol(self._path(sha256)))

    def iter_all(self) -> Iterator[str]:
        self.fs.invalidate_cache(self.root)
        try:
            paths = self.fs.find(self.root)
        except FileNotFoundError:
            return
        prefix = self.root.lstrip("/") + "/"
        for path in paths:
            rel = str(path).lstrip("/")
            if not rel.startswith(prefix):
                continue
            parts = rel[len(prefix):].split("/")
            if len(parts) != 3:
                continue
            first, second, name = parts
            if base.is_sha256(name) and first == name[:2] and second == name[2:4]:
                yield name
