"""The blob store interface: content-addressed, write-once bytes keyed by sha256.

Every backend stores a blob at ``<root>/ab/cd/<sha256>`` (docs/metrics-and-artifacts.md) and
implements the same small contract, tested once against all of them. The shared
streaming logic (hash while copying, stop at the size limit) lives here so backends only
decide where bytes go and how the final name appears atomically.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeGuard

from runyard import errors

#: Bytes read or written per step; blobs are never held in memory whole.
CHUNK_SIZE = 1024 * 1024

#: A temporary upload older than this is an abandoned one (default of ``purge_temp``).
STALE_TEMP_S = 24 * 3600.0

_SHA256_RE = re.compile(r"[0-9a-f]{64}")

#: Anything ``put`` accepts: a readable binary file or an iterable of byte chunks.
Source = BinaryIO | Iterable[bytes | bytearray | memoryview]


@dataclass(frozen=True)
class BlobInfo:
    """What ``put`` stored: the digest, the size, and whether this call wrote it."""

    sha256: str
    size: int
    created: bool


def is_sha256(value: object) -> TypeGuard[str]:
    """True for 64 lowercase hex characters."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


def validate_sha256(value: object, field: str = "sha256") -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise ValidationError.

    Blob paths are built from this string, so nothing else (``..``, ``/``) may pass.
    """
    if not is_sha256(value):
        raise errors.ValidationError(
            f"{field}: expected 64 lowercase hex characters, got {value!r}", field=field
        )
    return value


def blob_key(sha256: str) -> str:
    """Relative key of a blob: ``ab/cd/<sha256>``."""
    validate_sha256(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def iter_source(source: Source, max_size: int | None) -> Iterator[bytes]:
    """Yield the chunks of ``source``; raise TooLarge as soon as ``max_size`` is passed.

    A file is read at most ``max_size + 1`` bytes far, so an endless stream costs one
    chunk past the limit, never more.
    """
    total = 0
    read = getattr(source, "read", None)
    chunks: Iterable[bytes | bytearray | memoryview]
    if callable(read):
        chunks = _read_chunks(read, max_size)
    else:
        chunks = source
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise errors.ValidationError(
                f"body: expected bytes chunks, got {type(chunk).__name__}", field="body"
            )
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)  # len() counts bytes
        total += len(data)
        if max_size is not None and total > max_size:
            raise errors.TooLarge(
                f"body: exceeds the size limit of {max_size} bytes", max_size=max_size
            )
        if data:
            yield data


def _read_chunks(read: Callable[[int], bytes], max_size: int | None) -> Iterator[bytes]:
    total = 0
    while True:
        want = CHUNK_SIZE
        if max_size is not None:
            # One byte past the limit is enough to know it was passed.
            want = max(1, min(CHUNK_SIZE, max_size + 1 - total))
        chunk = read(want)
        if not chunk:
            return
        total += len(chunk)
        yield chunk


def discard(_chunk: bytes) -> None:
    """A ``write`` that keeps nothing: hash a body without storing it."""


def copy_hashed(
    source: Source, write: Callable[[bytes], object], max_size: int | None
) -> tuple[str, int]:
    """Copy ``source`` to ``write`` chunk by chunk; return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in iter_source(source, max_size):
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_put_args(expected_sha256: str | None, max_size: int | None) -> None:
    """Validate the options of ``put`` before any byte is read."""
    if expected_sha256 is not None:
        validate_sha256(expected_sha256, "expected_sha256")
    if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
        raise errors.ValidationError(
            f"max_size: expected a non-negative integer, got {max_size!r}", field="max_size"
        )


def check_digest(expected_sha256: str | None, actual: str) -> None:
    """Raise ChecksumMismatch when the content does not match what the uploader stated."""
    if expected_sha256 is not None and actual != expected_sha256:
        raise errors.ChecksumMismatch(
            f"sha256: content hashes to {actual}, not the stated {expected_sha256}",
            expected=expected_sha256,
            actual=actual,
        )


class BlobStore(abc.ABC):
    """Write-once blobs keyed by their sha256, laid out as ``<root>/ab/cd/<sha256>``.

    Methods are synchronous and thread-safe; async callers run them in a thread pool.
    """

    #: Where the store lives, as a URL (``file:///...``, ``s3://bucket/prefix``).
    root_url: str

    @abc.abstractmethod
    def put(
        self,
        stream: Source,
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Store the bytes of ``stream`` once; verify the digest and the size limit.

        Raises ChecksumMismatch or TooLarge and keeps nothing when either check fails.
        An existing blob is not rewritten (``created=False``).
        """

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """True when the blob is stored."""

    @abc.abstractmethod
    def size(self, sha256: str) -> int:
        """Size of the blob in bytes; NotFound when absent."""

    @abc.abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """A streaming, readable binary file of the blob; NotFound when absent."""

    @abc.abstractmethod
    def delete(self, sha256: str) -> bool:
        """Remove the blob; False when it was not there."""

    @abc.abstractmethod
    def url(self, sha256: str) -> str:
        """Where the blob lives, as a URL."""

    @abc.abstractmethod
    def iter_all(self) -> Iterator[str]:
        """Every stored sha256, in no particular order (temporary uploads excluded)."""

    @abc.abstractmethod
    def purge_temp(self, older_than_s: float = STALE_TEMP_S) -> int:
        """Remove uploads abandoned (by a crash) more than ``older_than_s`` ago; count them.

        Younger ones are left alone: they may belong to an upload still in progress.
        """

    def iter_chunks(self, sha256: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most ``chunk_size``; NotFound when absent."""
        with self.open(sha256) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_url!r})"


def not_found(sha256: str) -> errors.NotFound:
    """The error for a missing blob."""
    return errors.NotFound(f"blob {sha256} not found", sha256=sha256)
