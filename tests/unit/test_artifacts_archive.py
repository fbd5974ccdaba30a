"""tar.zst bundles: round trips, determinism, and hand-crafted malicious archives."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from runyard import errors
from runyard.artifacts import bundle_dir, extract_archive

Member = tuple[tarfile.TarInfo, bytes | None]


def file_member(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def dir_member(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def special_member(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def craft(path: Path, members: list[Member]) -> Path:
    """Write a tar.zst with exactly these members, as an attacker would."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    return path


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    (root / "checkpoints" / "nested").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "model.pt").write_bytes(os.urandom(300_000))
    (root / "checkpoints" / "step-100.pt").write_bytes(b"step 100")
    (root / "checkpoints" / "nested" / "empty").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "latest").symlink_to("checkpoints/step-100.pt")
    (root / "checkpoints" / "up").symlink_to("../model.pt")
    (tmp_path / "secret").write_text("do not upload")
    (root / "leak-rel").symlink_to("../secret")
    (root / "leak-abs").symlink_to(tmp_path / "secret")
    return root


def test_roundtrip(tree: Path, tmp_path: Path) -> None:
    bundle = bundle_dir(tree, dest_dir=tmp_path)
    try:
        assert bundle.name.endswith(".tar.zst")
        assert bundle.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
        dest = tmp_path / "out"
        names = extract_archive(bundle, dest)
    finally:
        bundle.unlink()
    assert names == [
        "checkpoints",
        "checkpoints/nested",
        "checkpoints/nested/empty",
        "checkpoints/step-100.pt",
        "checkpoints/up",
        "empty-dir",
        "latest",
        "model.pt",
        "run.sh",
    ]
    assert (dest / "model.pt").read_bytes() == (tree / "model.pt").read_bytes()
    assert (dest / "checkpoints" / "nested" / "empty").read_bytes() == b""
    assert (dest / "empty-dir").is_dir()
    assert os.readlink(dest / "latest") == "checkpoints/step-100.pt"
    assert (dest / "latest").read_bytes() == b"step 100"
    assert (dest / "checkpoints" / "up").read_bytes() == (tree / "model.pt").read_bytes()
    assert os.stat(dest / "run.sh").st_mode & 0o111
    assert not os.stat(dest / "model.pt").st_mode & 0o111
    # Links leading outside the directory never make it into a bundle.
    assert not (dest / "leak-rel").exists() and not (dest / "leak-rel").is_symlink()
    assert not (dest / "leak-abs").is_symlink()


def test_extract_from_a_file_object(tree: Path, tmp_path: Path) -> None:
    bundle = bundle_dir(tree, dest_dir=tmp_path)
    with bundle.open("rb") as fh:
        extract_archive(fh, tmp_path / "out")
        assert not fh.closed  # the caller's file stays the caller's
    assert (tmp_path / "out" / "checkpoints" / "step-100.pt").read_bytes() == b"step 100"


def test_bundles_are_deterministic(tree: Path, tmp_path: Path) -> None:
    first = bundle_dir(tree, dest_dir=tmp_path)
    later = time.time() + 3600
    for path in tree.rglob("*"):
        os.utime(path, (later, later), follow_symlinks=False)
    second = bundle_dir(tree, dest_dir=tmp_path)
    assert first != second
    assert sha_of(first) == sha_of(second)
    (tree / "model.pt").write_bytes(b"changed")
    assert sha_of(bundle_dir(tree, dest_dir=tmp_path)) != sha_of(first)


def test_bundle_inside_the_directory_skips_itself(tree: Path) -> None:
    bundle = bundle_dir(tree, dest_dir=tree)
    out = tree.parent / "out"
    names = extract_archive(bundle, out)
    assert bundle.name not in names
    assert "model.pt" in names


def test_bundle_refuses_a_non_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "missing"):
        with pytest.raises(errors.ValidationError) as caught:
            bundle_dir(bad, dest_dir=tmp_path)
        assert caught.value.field == "path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# -- malicious archives ---------------------------------------------------------------------

MALICIOUS: dict[str, list[Member]] = {
    "dotdot": [file_member("../x")],
    "dotdot-inside": [dir_member("a"), file_member("a/../../x")],
    "absolute": [file_member("/etc/x")],
    "absolute-dir": [dir_member("/tmp/evil")],
    "backslash": [file_member("..\\x")],
    "symlink-absolute": [link_member("link", "/etc")],
    "symlink-dotdot": [link_member("link", "../x")],
    "symlink-deep-dotdot": [dir_member("a"), link_member("a/link", "../../x")],
    "symlink-then-write": [link_member("link", "/tmp"), file_member("link/x")],
    # Each link looks harmless alone; together "esc" resolves to the parent of dest.
    "symlink-chain": [link_member("self", "."), link_member("esc", "self/..")],
    "symlink-chain-write": [
        link_member("self", "."),
        link_member("esc", "self/.."),
        file_member("esc/x"),
    ],
    "file-then-symlink": [file_member("x"), link_member("x", "/etc/passwd")],
    "hardlink-absolute": [link_member("h", "/etc/passwd", tarfile.LNKTYPE)],
    "hardlink-dotdot": [link_member("h", "../x", tarfile.LNKTYPE)],
    "hardlink-missing": [link_member("h", "nothing-here", tarfile.LNKTYPE)],
    "char-device": [special_member("tty", tarfile.CHRTYPE)],
    "block-device": [special_member("sda", tarfile.BLKTYPE)],
    "fifo": [special_member("pipe", tarfile.FIFOTYPE)],
    "dir-over-file": [file_member("d"), dir_member("d")],
    "file-over-dir": [dir_member("d"), file_member("d")],
}


#: Why each one is refused (a fragment of the message), so no case passes by accident.
WHY = {
    "dotdot": "'..' segments",
    "dotdot-inside": "'..' segments",
    "absolute": "relative path",
    "absolute-dir": "relative path",
    "backslash": "separator",
    "symlink-absolute": "points outside",
    "symlink-dotdot": "points outside",
    "symlink-deep-dotdot": "points outside",
    "symlink-then-write": "points outside",
    "symlink-chain": "symlink points outside",
    "symlink-chain-write": "parent is a symlink pointing outside",
    "file-then-symlink": "points outside",
    "hardlink-absolute": "points outside",
    "hardlink-dotdot": "points outside",
    "hardlink-missing": "not an extracted file",
    "char-device": "device files",
    "block-device": "device files",
    "fifo": "fifos",
    "dir-over-file": "with a directory",
    "file-over-dir": "replace a directory",
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused(case: str, tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    archive = craft(tmp_path / "evil.tar.zst", MALICIOUS[case])
    dest = sandbox / "dest"
    with pytest.raises(errors.ValidationError) as caught:
        extract_archive(archive, dest)
    assert caught.value.field == "archive"
    assert WHY[case] in caught.value.message
    # Nothing was left behind: no dest, no half-extracted work directory, no escapee.
    assert list(sandbox.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.zst", "sandbox"]


def test_safe_links_are_kept(tmp_path: Path) -> None:
    archive = craft(
        tmp_path / "ok.tar.zst",
        [
            dir_member("./sub"),
            file_member("./sub/f", b"inner"),
            link_member("to-sub", "sub"),
            file_member("to-sub/g", b"through a link"),
            link_member("sub/up", "../to-sub/f"),
            link_member("hard", "sub/f", tarfile.LNKTYPE),
            file_member("setuid", b"x", mode=0o4755),
            file_member("replaced", b"old"),
            file_member("replaced", b"new"),
        ],
    )
    dest = tmp_path / "dest"
    dest.mkdir()  # an empty existing directory is fine
    extract_archive(archive, dest)
    assert (dest / "sub" / "g").read_bytes() == b"through a link"
    assert (dest / "sub" / "up").read_bytes() == b"inner"
    assert (dest / "hard").read_bytes() == b"inner"
    assert os.stat(dest / "hard").st_ino == os.stat(dest / "sub" / "f").st_ino
    assert stat.S_IMODE(os.stat(dest / "setuid").st_mode) == 0o755
    assert (dest / "replaced").read_bytes() == b"new"


def test_size_limit(tmp_path: Path) -> None:
    archive = craft(
        tmp_path / "big.tar.zst", [file_member("a", b"x" * 60), file_member("b", b"y" * 60)]
    )
    with pytest.raises(errors.TooLarge):
        extract_archive(archive, tmp_path / "dest", max_size=100)
    assert not (tmp_path / "dest").exists()
    assert extract_archive(archive, tmp_path / "dest", max_size=120) == ["a", "b"]


def test_member_limit(tmp_path: Path) -> None:
    archive = craft(tmp_path / "many.tar.zst", [file_member(f"f{i}") for i in range(5)])
    with pytest.raises(errors.TooLarge):
        extract_archive(archive, tmp_path / "dest", max_members=4)
    assert not (tmp_path / "dest").exists()
    assert len(extract_archive(archive, tmp_path / "dest", max_members=5)) == 5


def test_decompression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    # 64 MiB of zeros compresses to a few KiB; extraction must stop at the limit.
    archive = craft(tmp_path / "bomb.tar.zst", [file_member("zeros", bytes(64 * 1024 * 1024))])
    assert archive.stat().st_size < 64 * 1024
    with pytest.raises(errors.TooLarge):
        extract_archive(archive, tmp_path / "dest", max_size=1024 * 1024)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "payload",
    [b"", b"not an archive at all", zstandard.ZstdCompressor().compress(b"zstd, not tar" * 50)],
)
def test_garbage_is_a_validation_error(payload: bytes, tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(payload)
    with pytest.raises(errors.ValidationError) as caught:
        extract_archive(tmp_path / "junk", tmp_path / "dest")
    assert caught.value.field == "archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]


def test_truncated_archive(tree: Path, tmp_path: Path) -> None:
    whole = bundle_dir(tree, dest_dir=tmp_path).read_bytes()
    (tmp_path / "cut").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(errors.ValidationError):
        extract_archive(tmp_path / "cut", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_dest_must_be_absent_or_empty(tree: Path, tmp_path: Path) -> None:
    bundle = bundle_dir(tree, dest_dir=tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-link").symlink_to(tmp_path / "elsewhere")
    for dest in (busy, tmp_path / "a-file", tmp_path / "a-link"):
        with pytest.raises(errors.ValidationError) as caught:
            extract_archive(bundle, dest)
        assert caught.value.field == "dest"
    assert [p.name for p in busy.iterdir()] == ["keep"]


def test_bundle_leaves_out_what_is_removed_while_it_is_packed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A training process may still be writing the directory: a file or a directory removed
    between the listing and the packing is skipped with a warning, the rest is bundled."""
    from runyard.artifacts import archive

    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    (src / "logs" / "1.txt").write_text("log")
    (src / "a.txt").write_text("kept")
    (src / "gone.txt").write_text("removed while packed")
    (src / "z.txt").write_text("kept too")
    walk = archive._walk

    def racing_walk(root: Path, skip: Path, prefix: str = ""):  # type: ignore[no-untyped-def]
        for arcname, full in walk(root, skip, prefix):
            if arcname == "gone.txt":
                full.unlink()  # listed, then removed before it is read
            if arcname == "logs":
                (full / "1.txt").unlink()
                full.rmdir()  # listed, then removed before its entries are listed
            yield arcname, full

    monkeypatch.setattr(archive, "_walk", racing_walk)
    with caplog.at_level("WARNING", logger="runyard.artifacts.archive"):
        bundle = bundle_dir(src, dest_dir=tmp_path)
    out = tmp_path / "out"
    assert sorted(extract_archive(bundle, out)) == ["a.txt", "z.txt"]
    assert (out / "a.txt").read_text() == "kept" and (out / "z.txt").read_text() == "kept too"
    said = caplog.text
    assert "'gone.txt' (removed while it was packed)" in said
    assert "'logs' (removed while it was packed)" in said


def test_bundle_of_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError, match="is not a directory"):
        bundle_dir(tmp_path / "nowhere", dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
