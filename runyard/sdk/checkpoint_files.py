"""A registered checkpoint as one file with its sha256, ready to upload or store.

A checkpoint is a file (``model.pt``) or a directory (a Hugging Face ``checkpoint-500/``);
a directory is packed into an uncompressed tar (standard library only: the SDK's base
install has no zstandard, and weights hardly compress anyway).
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._+@-]+")


@dataclass(frozen=True, slots=True)
class Packed:
    """The file to send, its artifact name, digest and size."""

    file: Path
    name: str
    sha256: str
    size: int
    temporary: bool

    def cleanup(self) -> None:
        if self.temporary:
            try:
                os.unlink(self.file)
            except OSError:
                pass


def safe_name(path: Path) -> str:
    """An artifact-safe file name for ``path`` (letters, digits and ``._+@-``)."""
    name = _UNSAFE.sub("-", path.name).strip(".-") or "checkpoint"
    return name[:150]


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def pack(path: Path) -> Packed | None:
    """The checkpoint at ``path`` as one file; None when it does not exist any more."""
    if path.is_file():
        sha, size = sha256_file(path)
        return Packed(path, safe_name(path), sha, size, temporary=False)
    if path.is_dir():
        fd, tmp = tempfile.mkstemp(prefix=".runyard-ckpt-", suffix=".tar")
        os.close(fd)
        with tarfile.open(tmp, "w") as tar:
            for child in sorted(path.rglob("*")):
                if child.is_file():
                    tar.add(child, arcname=str(child.relative_to(path)), recursive=False)
        sha, size = sha256_file(Path(tmp))
        return Packed(Path(tmp), safe_name(path) + ".tar", sha, size, temporary=True)
    return None
