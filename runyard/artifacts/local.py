"""The default blob store: a directory on the local filesystem."""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runyard.artifacts import base

#: Uploads in progress live here, on the same filesystem as the blobs so that the final
#: rename is atomic. The name cannot collide with a two-hex-digit fan-out directory.
TEMP_DIR = ".tmp"

# Filesystems without hard links answer one of these; we then fall back to os.replace.
_HEX = frozenset("0123456789abcdef")

_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class LocalBlobStore(base.BlobStore):
    """Blobs under ``<root>/ab/cd/<sha256>``; uploads stream to ``<root>/.tmp`` first."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.root_url = self.root.as_uri()

    def _path(self, sha256: str) -> Path:
        return self.root / base.blob_key(sha256)

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

        temp_dir = self.root / TEMP_DIR
        temp_dir.mkdir(parents=True, exist_ok=True)
        temp = temp_dir / uuid.uuid4().hex
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as fh:
                actual, size = base.copy_hashed(stream, fh.write, max_size)
                base.check_digest(expected_sha256, actual)
                fh.flush()
                # The name is a promise about the content: make the bytes durable before
                # the name appears, or a crash could leave a truncated blob under it.
                os.fsync(fh.fileno())
            final = self._path(actual)
            final.parent.mkdir(parents=True, exist_ok=True)
            created = _publish(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        return base.BlobInfo(actual, size, created=created)

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self._path(sha256).stat().st_size
        except FileNotFoundError:
            raise base.not_found(sha256) from None

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self._path(sha256).open("rb")
        except FileNotFoundError:
            raise base.not_found(sha256) from None

    def delete(self, sha256: str) -> bool:
        try:
            self._path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def purge_temp(self, older_than_s: float = base.STALE_TEMP_S) -> int:
        temp_dir = self.root / TEMP_DIR
        if not temp_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in temp_dir.iterdir():
            try:
                if entry.is_file() and entry.stat().st_mtime <= cutoff:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:  # finished (or purged) meanwhile
                continue
        return removed

    def url(self, sha256: str) -> str:
        return self._path(sha256).as_uri()

    def iter_all(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for first in sorted(_fanout_dirs(self.root)):
            for second in sorted(_fanout_dirs(first)):
                prefix = first.name + second.name
                for entry in sorted(second.iterdir()):
                    name = entry.name
                    if name.startswith(prefix) and base.is_sha256(name) and entry.is_file():
                        yield name


def _publish(temp: Path, final: Path) -> bool:
    """Give ``temp`` its final name atomically; False when another writer got there first.

    A hard link fails if the name exists, so exactly one of several concurrent writers of
    the same blob reports ``created``; every reader sees either no blob or a whole one.
    """
    try:
        os.link(temp, final)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    if final.exists():
        return False
    # Same content under the same name, so losing a race here only rewrites identical bytes.
    os.replace(temp, final)
    return True


def _fanout_dirs(parent: Path) -> Iterator[Path]:
    for entry in parent.iterdir():
        if len(entry.name) == 2 and all(c in _HEX for c in entry.name) and entry.is_dir():
            yield entry
