"""Directory bundles as ``tar.zst``: streamed in, extracted without escaping ``dest``.

``bundle_dir`` is deterministic (sorted entries, zeroed times and owners, normalised
modes), so a bit-identical re-run yields a bit-identical bundle and deduplicates in the
blob store. ``extract_archive`` trusts nothing in the archive: every path is checked, links
must stay inside, special files are refused, sizes and member counts are bounded, and the
tree appears at ``dest`` only when all of it passed (docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from runyard import errors
from runyard.artifacts import names

logger = logging.getLogger(__name__)

#: Bytes an extraction may write, in all, unless the caller says otherwise.
MAX_EXTRACT_SIZE = 16 * 1024**3
#: Entries an archive may hold, unless the caller says otherwise.
MAX_MEMBERS = 100_000
#: Largest zstd window accepted: bounds the decompressor's memory (128 MiB).
MAX_WINDOW_SIZE = 1 << 27
#: zstd compression level of bundles (fast, still a good ratio).
COMPRESSION_LEVEL = 3

_CHUNK = 1024 * 1024
_FIELD = "archive"


def bundle_dir(
    path: str | os.PathLike[str],
    *,
    dest_dir: str | os.PathLike[str] | None = None,
    level: int = COMPRESSION_LEVEL,
) -> Path:
    """Pack the directory ``path`` into a new temporary ``.tar.zst`` file and return it.

    The caller owns (and removes) the file. Symlinks are kept only when they are relative
    and stay inside ``path``; others, and special files, are skipped with a warning, so
    a link can never smuggle a file from outside the directory into an upload.
    """
    import zstandard

    root = Path(path)
    if not root.is_dir():
        raise errors.ValidationError(f"path: {str(root)!r} is not a directory", field="path")
    fd, out_name = tempfile.mkstemp(prefix="runyard-bundle-", suffix=".tar.zst", dir=dest_dir)
    out = Path(out_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
            with cctx.stream_writer(raw, closefd=False) as zst:
                with tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for arcname, full in _walk(root, skip=out):
                        _add(tar, arcname, full, root)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _walk(root: Path, skip: Path, prefix: str = "") -> Iterator[tuple[str, Path]]:
    """(archive name, path) of every entry under ``root``, depth first, sorted by name."""
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        if not prefix:
            raise  # the directory being bundled itself
        logger.warning("bundle: skipping %r (removed while it was packed)", prefix[:-1])
        return
    for full in entries:
        if full == skip:
            continue
        arcname = f"{prefix}{full.name}"
        try:
            names.check_relative_path(arcname, "path", names.MEMBER_PATH_MAX)
        except errors.ValidationError as exc:
            logger.warning("bundle: skipping %r: %s", arcname, exc.message)
            continue
        yield arcname, full
        if full.is_dir() and not full.is_symlink():
            yield from _walk(full, skip, f"{arcname}/")


def _add(tar: tarfile.TarFile, arcname: str, full: Path, root: Path) -> None:
    # A training process may still be writing the directory: what it removes between the
    # listing and the packing is left out, not a reason to lose the rest.
    try:
        _add_entry(tar, arcname, full, root)
    except (FileNotFoundError, NotADirectoryError):
        logger.warning("bundle: skipping %r (removed while it was packed)", arcname)


def _add_entry(tar: tarfile.TarFile, arcname: str, full: Path, root: Path) -> None:
    st = full.lstat()
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if full.is_symlink():
        target = os.readlink(full)
        if not _link_stays_inside(arcname, target) or not _inside(root, full):
            logger.warning("bundle: skipping symlink %r -> %r (points outside)", arcname, target)
            return
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        tar.addfile(info)
    elif full.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    elif full.is_file():
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
        with full.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        logger.warning("bundle: skipping %r (not a file, directory or symlink)", arcname)


def extract_archive(
    file: str | os.PathLike[str] | BinaryIO,
    dest: str | os.PathLike[str],
    *,
    max_size: int = MAX_EXTRACT_SIZE,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Extract the ``tar.zst`` ``file`` into ``dest`` (absent or empty); return member names.

    Raises ValidationError for a bad archive or an unsafe member (absolute path, ``..``,
    a link pointing outside, a device or fifo), TooLarge past ``max_size`` bytes or
    ``max_members`` entries. On any error ``dest`` is left as it was.
    """
    target = Path(dest)
    if target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise errors.ValidationError(
            f"dest: {str(target)!r} must not exist or be an empty directory", field="dest"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".runyard-extract-", dir=target.parent))
    try:
        with _open_source(file) as fh:
            extracted = _Extractor(work, max_size, max_members).run(fh)
        os.chmod(work, 0o755)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return extracted


@contextlib.contextmanager
def _open_source(file: str | os.PathLike[str] | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(file, str | os.PathLike):
        with open(file, "rb") as fh:
            yield fh
    else:
        yield file


class _Extractor:
    """One extraction into the private directory ``root``."""

    def __init__(self, root: Path, max_size: int, max_members: int) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.max_size = max_size
        self.max_members = max_members
        self.written = 0
        self.links: list[Path] = []

    def run(self, fh: BinaryIO) -> list[str]:
        import zstandard

        extracted: list[str] = []
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_SIZE)
        try:
            with dctx.stream_reader(fh, closefd=False) as reader:
                with tarfile.open(fileobj=reader, mode="r|") as tar:
                    for count, member in enumerate(tar, start=1):
                        if count > self.max_members:
                            raise errors.TooLarge(
                                f"{_FIELD}: more than {self.max_members} entries",
                                max_members=self.max_members,
                            )
                        name = self._member(tar, member)
                        if name is not None:
                            extracted.append(name)
        except (zstandard.ZstdError, tarfile.TarError, EOFError) as exc:
            raise errors.ValidationError(
                f"{_FIELD}: not a readable tar.zst archive ({exc})", field=_FIELD
            ) from exc
        # Checked again on the finished tree: a later member may have changed what an
        # earlier link resolves to (a link through a link), which no per-member check sees.
        for link in self.links:
            if not _inside_real(self.real_root, os.path.realpath(link)):
                raise _unsafe(link.relative_to(self.root).as_posix(), "symlink points outside")
        return extracted

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> str | None:
        raw = member.name
        name = raw.rstrip("/") if member.isdir() else raw
        while name.startswith("./"):
            name = name[2:]
        if name in ("", "."):
            return None
        try:
            names.check_relative_path(name, f"{_FIELD} member", names.MEMBER_PATH_MAX)
        except errors.ValidationError as exc:
            raise _unsafe(raw, exc.message.split(": ", 1)[-1]) from None
        path = self.root / name
        self._make_parents(name, path)
        if member.isdir():
            self._make_dir(name, path)
        elif member.isfile():
            self._clear(name, path)
            self._write_file(tar, member, path)
        elif member.issym():
            self._clear(name, path)
            self._make_symlink(name, member.linkname, path)
        elif member.islnk():
            self._clear(name, path)
            self._make_hardlink(name, member.linkname, path)
        else:
            raise _unsafe(raw, "device files, fifos and other special files are not allowed")
        return name

    def _make_parents(self, name: str, path: Path) -> None:
        """Create missing parents, following only links that resolve inside the root."""
        current = self.root
        for part in name.split("/")[:-1]:
            current = current / part
            if current.is_symlink():
                if not _inside_real(self.real_root, os.path.realpath(current)):
                    raise _unsafe(name, "a parent is a symlink pointing outside")
                if not current.is_dir():
                    raise _unsafe(name, "a parent is not a directory")
            elif current.is_dir():
                continue
            elif current.exists():
                raise _unsafe(name, "a parent is not a directory")
            else:
                current.mkdir(mode=0o755)
        if not _inside_real(self.real_root, os.path.realpath(path.parent)):
            raise _unsafe(name, "resolves outside the destination")

    def _clear(self, name: str, path: Path) -> None:
        """A later member replaces an earlier one (as tar does), but never a directory."""
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            raise _unsafe(name, "would replace a directory")

    def _make_dir(self, name: str, path: Path) -> None:
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise _unsafe(name, "would replace a file or link with a directory")
        path.mkdir(mode=0o755, exist_ok=True)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        if self.written + member.size > self.max_size:
            raise errors.TooLarge(
                f"{_FIELD}: extracted content exceeds {self.max_size} bytes",
                max_size=self.max_size,
            )
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isfile() members always have data
            raise _unsafe(member.name, "has no data")
        mode = 0o755 if member.mode & 0o111 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with source, os.fdopen(os.open(path, flags, mode), "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                self.written += len(chunk)

    def _make_symlink(self, name: str, target: str, path: Path) -> None:
        if not _link_stays_inside(name, target):
            raise _unsafe(name, f"symlink to {target!r} points outside")
        os.symlink(target, path)
        self.links.append(path)

    def _make_hardlink(self, name: str, target: str, path: Path) -> None:
        while target.startswith("./"):
            target = target[2:]
        try:
            names.check_relative_path(target, f"{_FIELD} member", names.MEMBER_PATH_MAX)
        except errors.ValidationError:
            raise _unsafe(name, f"hard link to {target!r} points outside") from None
        source = self.root / target
        if source.is_symlink() or not source.is_file():
            raise _unsafe(name, f"hard link to {target!r}, which is not an extracted file")
        if not _inside_real(self.real_root, os.path.realpath(source)):
            raise _unsafe(name, f"hard link to {target!r} points outside")
        os.link(source, path)


def _link_stays_inside(name: str, target: str) -> bool:
    """Lexically: a relative target that, joined to the link's directory, stays inside."""
    if not target or "\x00" in target or "\\" in target or target.startswith("/"):
        return False
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return joined != ".." and not joined.startswith("../") and not joined.startswith("/")


def _inside(root: Path, path: Path) -> bool:
    return _inside_real(os.path.realpath(root), os.path.realpath(path))


def _inside_real(real_root: str, real_path: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _unsafe(member: str, why: str) -> errors.ValidationError:
    return errors.ValidationError(
        f"{_FIELD}: member {member!r} refused: {why}", field=_FIELD, member=member
    )
