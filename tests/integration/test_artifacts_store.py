"""One blob store contract, run against the local, memory:// and S3 (moto) backends."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard import errors
from runyard.artifacts import BlobStore, LocalBlobStore, open_blob_store
from runyard.artifacts.base import CHUNK_SIZE, blob_key

BAD_SHAS = [
    "",
    "../../etc/passwd",
    "A" * 64,
    "0" * 63,
    "0" * 65,
    "0" * 62 + "/x",
    "g" * 64,
    None,
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Endless:
    """A file that never ends; counts what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        size = CHUNK_SIZE if size < 0 else size
        self.read_bytes += size
        return b"z" * size


class BlobStoreContract:
    """Every backend must pass these. Subclasses provide ``location`` and ``all_keys``."""

    #: Whether the store is shared with other processes (memory:// is per process).
    shared_between_processes = True
    #: Whether exactly one of several racing writers reports ``created``.
    exact_created = True

    @pytest.fixture
    def location(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def store(self, location: str) -> BlobStore:
        return open_blob_store(location)

    def all_keys(self, store: BlobStore) -> list[str]:
        """Every object under the store's root (temporary ones included), relative."""
        raise NotImplementedError

    # -- put / read ---------------------------------------------------------------------

    def test_roundtrip(self, store: BlobStore) -> None:
        data = os.urandom(CHUNK_SIZE * 2 + 123)
        info = store.put(io.BytesIO(data), expected_sha256=sha(data))
        assert (info.sha256, info.size, info.created) == (sha(data), len(data), True)
        assert store.exists(info.sha256)
        assert store.size(info.sha256) == len(data)
        with store.open(info.sha256) as fh:
            assert fh.read() == data
        chunks = list(store.iter_chunks(info.sha256, chunk_size=1000))
        assert b"".join(chunks) == data
        assert max(len(c) for c in chunks) <= 1000
        assert list(store.iter_all()) == [info.sha256]
        assert self.all_keys(store) == [blob_key(info.sha256)]

    def test_put_from_chunks_without_expected_digest(self, store: BlobStore) -> None:
        parts: list[bytes | bytearray | memoryview] = [
            b"alpha", bytearray(b"-"), memoryview(b"beta"), b""
        ]
        info = store.put(iter(parts))
        assert info.sha256 == sha(b"alpha-beta")
        assert info.size == 10
        assert b"".join(store.iter_chunks(info.sha256)) == b"alpha-beta"

    def test_empty_blob(self, store: BlobStore) -> None:
        info = store.put(io.BytesIO(b""), expected_sha256=sha(b""))
        assert info.size == 0 and store.size(info.sha256) == 0
        assert list(store.iter_chunks(info.sha256)) == []

    def test_layout_and_url(self, store: BlobStore) -> None:
        info = store.put(io.BytesIO(b"where"))
        digest = info.sha256
        assert store.url(digest).endswith(f"/{digest[:2]}/{digest[2:4]}/{digest}")
        assert store.url(digest).startswith(store.root_url.rstrip("/") + "/")

    # -- dedupe -------------------------------------------------------------------------

    def test_dedupe(self, store: BlobStore) -> None:
        data = b"same bytes" * 1000
        first = store.put(io.BytesIO(data))
        second = store.put(io.BytesIO(data))
        third = store.put(io.BytesIO(data), expected_sha256=sha(data))
        assert first.created is True
        assert second.created is False and third.created is False
        assert second.sha256 == third.sha256 == first.sha256
        assert self.all_keys(store) == [blob_key(first.sha256)]

    def test_existing_blob_still_verifies_the_body(self, store: BlobStore) -> None:
        stored = store.put(io.BytesIO(b"original"))
        with pytest.raises(errors.ChecksumMismatch):
            store.put(io.BytesIO(b"impostor"), expected_sha256=stored.sha256)
        assert b"".join(store.iter_chunks(stored.sha256)) == b"original"
        assert self.all_keys(store) == [blob_key(stored.sha256)]

    # -- refusals keep nothing ----------------------------------------------------------

    def test_checksum_mismatch_keeps_nothing(self, store: BlobStore) -> None:
        data = os.urandom(CHUNK_SIZE + 7)
        with pytest.raises(errors.ChecksumMismatch) as caught:
            store.put(io.BytesIO(data), expected_sha256=sha(b"something else"))
        assert caught.value.details["actual"] == sha(data)
        assert not store.exists(sha(data))
        assert self.all_keys(store) == []

    def test_over_limit_stops_early_and_keeps_nothing(self, store: BlobStore) -> None:
        pulled = 0

        def endless() -> Iterator[bytes]:
            nonlocal pulled
            while True:
                pulled += 1
                yield b"x" * 1024

        with pytest.raises(errors.TooLarge):
            store.put(endless(), max_size=10 * 1024)
        assert pulled == 11  # the chunk that passed the limit, no more
        assert self.all_keys(store) == []

    def test_over_limit_from_a_file_reads_one_byte_past(self, store: BlobStore) -> None:
        source = Endless()
        with pytest.raises(errors.TooLarge):
            store.put(source, max_size=3 * CHUNK_SIZE + 5)  # type: ignore[arg-type]
        assert source.read_bytes == 3 * CHUNK_SIZE + 6
        assert self.all_keys(store) == []

    def test_limit_is_inclusive(self, store: BlobStore) -> None:
        assert store.put(io.BytesIO(b"x" * 10), max_size=10).size == 10
        with pytest.raises(errors.TooLarge):
            store.put(io.BytesIO(b"y" * 11), max_size=10)
        assert list(store.iter_all()) == [sha(b"x" * 10)]

    def test_bad_chunk_type(self, store: BlobStore) -> None:
        with pytest.raises(errors.ValidationError):
            store.put(iter(["text"]))  # type: ignore[arg-type]
        assert self.all_keys(store) == []

    # -- validation and absence ---------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_SHAS)
    def test_bad_sha_is_refused_everywhere(self, store: BlobStore, bad: Any) -> None:
        for call in (store.exists, store.size, store.open, store.delete, store.url):
            with pytest.raises(errors.ValidationError) as caught:
                call(bad)
            assert caught.value.field == "sha256"
        if bad is None:
            return  # no stated digest is allowed for put
        with pytest.raises(errors.ValidationError) as caught:
            store.put(io.BytesIO(b"data"), expected_sha256=bad)
        assert caught.value.field == "expected_sha256"
        assert self.all_keys(store) == []

    def test_bad_max_size(self, store: BlobStore) -> None:
        with pytest.raises(errors.ValidationError) as caught:
            store.put(io.BytesIO(b"data"), max_size=-1)
        assert caught.value.field == "max_size"

    def test_missing_blob(self, store: BlobStore) -> None:
        missing = sha(b"never stored")
        assert store.exists(missing) is False
        assert store.delete(missing) is False
        with pytest.raises(errors.NotFound):
            store.size(missing)
        with pytest.raises(errors.NotFound):
            store.open(missing)
        with pytest.raises(errors.NotFound):
            list(store.iter_chunks(missing))

    def test_delete_and_iter_all(self, store: BlobStore) -> None:
        digests = {store.put(io.BytesIO(f"blob {i}".encode())).sha256 for i in range(5)}
        assert set(store.iter_all()) == digests
        victim = sorted(digests)[0]
        assert store.delete(victim) is True
        assert store.exists(victim) is False
        assert set(store.iter_all()) == digests - {victim}
        # A deleted blob can be stored again.
        assert store.put(io.BytesIO(b"blob 0")).sha256 in digests

    def test_purge_temp_removes_only_stale_uploads(self, store: BlobStore) -> None:
        kept = store.put(io.BytesIO(b"a finished blob")).sha256
        self.leave_temp(store, "abandoned")
        assert store.purge_temp(older_than_s=3600) == 0  # may still be uploading
        assert len(self.all_keys(store)) == 2
        time.sleep(0.05)
        assert store.purge_temp(older_than_s=0) == 1
        assert self.all_keys(store) == [blob_key(kept)]
        assert store.purge_temp(older_than_s=0) == 0

    def leave_temp(self, store: BlobStore, name: str) -> None:
        """Leave a temporary upload behind, as a crashed writer would."""
        fs = store.fs  # type: ignore[attr-defined]
        with fs.open(f"{store.root}/.tmp/{name}", "wb") as fh:  # type: ignore[attr-defined]
            fh.write(b"half an upload")

    # -- concurrency --------------------------------------------------------------------

    def test_concurrent_puts_from_threads(self, store: BlobStore) -> None:
        data = os.urandom(CHUNK_SIZE * 3 + 1)
        barrier = threading.Barrier(8)
        results: list[object] = []

        def upload() -> None:
            barrier.wait()
            try:
                results.append(store.put(io.BytesIO(data), expected_sha256=sha(data)))
            except Exception as exc:  # collected: the assertion below shows it
                results.append(exc)

        threads = [threading.Thread(target=upload) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 8
        assert all(getattr(r, "sha256", None) == sha(data) for r in results), results
        created = sum(bool(getattr(r, "created", False)) for r in results)
        assert created == 1 if self.exact_created else created >= 1
        assert self.all_keys(store) == [blob_key(sha(data))]
        assert b"".join(store.iter_chunks(sha(data))) == data

    def test_concurrent_puts_from_processes(
        self, store: BlobStore, location: str, tmp_path: Path
    ) -> None:
        if not self.shared_between_processes:
            pytest.skip("this backend lives inside one process")
        seed = uuid.uuid4().hex
        data = (seed.encode() * (CHUNK_SIZE // 16))[: 2 * CHUNK_SIZE + 5]
        go = tmp_path / "go"
        code = textwrap.dedent(
            """
            import hashlib, json, os, sys, time
            from runyard.artifacts import open_blob_store
            location, seed, go = sys.argv[1:4]
            store = open_blob_store(location)
            data = (seed.encode() * (1024 * 1024 // 16))[: 2 * 1024 * 1024 + 5]
            while not os.path.exists(go):
                time.sleep(0.005)
            info = store.put(iter([data[:1000], data[1000:]]),
                             expected_sha256=hashlib.sha256(data).hexdigest())
            print(json.dumps({"sha256": info.sha256, "created": info.created}))
            """
        )
        env = dict(os.environ, PYTHONPATH=str(Path(runyard.__file__).parents[1]))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, location, seed, str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        time.sleep(0.5)  # let them import and reach the starting line
        go.touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outputs]
        answers = [json.loads(out) for out, _ in outputs]
        assert {a["sha256"] for a in answers} == {sha(data)}
        assert self.all_keys(store) == [blob_key(sha(data))]
        assert b"".join(store.iter_chunks(sha(data))) == data


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def location(self, tmp_path: Path) -> str:
        return str(tmp_path / "blobs")

    def all_keys(self, store: BlobStore) -> list[str]:
        assert isinstance(store, LocalBlobStore)
        if not store.root.exists():
            return []
        return sorted(
            p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()
        )

    def leave_temp(self, store: BlobStore, name: str) -> None:
        assert isinstance(store, LocalBlobStore)
        (store.root / ".tmp").mkdir(parents=True, exist_ok=True)
        (store.root / ".tmp" / name).write_bytes(b"half an upload")

    def test_file_url_and_path_open_the_same_store(self, tmp_path: Path) -> None:
        by_path = open_blob_store(tmp_path / "b")
        by_url = open_blob_store((tmp_path / "b").as_uri())
        digest = by_path.put(io.BytesIO(b"one store")).sha256
        assert by_url.exists(digest)
        assert by_url.root_url == by_path.root_url == (tmp_path / "b").as_uri()
        assert by_path.url(digest) == (tmp_path / "b" / blob_key(digest)).as_uri()

    def test_iter_all_ignores_foreign_files(self, store: BlobStore) -> None:
        digest = store.put(io.BytesIO(b"real")).sha256
        assert isinstance(store, LocalBlobStore)
        (store.root / ".tmp" / "leftover").write_bytes(b"half an upload")
        (store.root / "README").write_text("not a blob")
        misplaced = sha(b"misplaced")
        (store.root / digest[:2] / digest[2:4] / misplaced).write_bytes(b"misplaced")
        assert list(store.iter_all()) == [digest]

    def test_unknown_scheme_and_empty_location(self) -> None:
        with pytest.raises(errors.ConfigError):
            open_blob_store("nosuchscheme://bucket/x")
        with pytest.raises(errors.ValidationError):
            open_blob_store("  ")
        with pytest.raises(errors.ValidationError):
            open_blob_store("file://otherhost/data")


class TestMemoryBlobStore(BlobStoreContract):
    shared_between_processes = False
    exact_created = False

    @pytest.fixture
    def location(self) -> Iterator[str]:
        url = f"memory://runyard-test-{uuid.uuid4().hex}"
        yield url
        store = open_blob_store(url)
        fs = store.fs  # type: ignore[attr-defined]
        if fs.exists(store.root):  # type: ignore[attr-defined]
            fs.rm(store.root, recursive=True)  # type: ignore[attr-defined]

    def all_keys(self, store: BlobStore) -> list[str]:
        return _fsspec_keys(store)


def _fsspec_keys(store: BlobStore) -> list[str]:
    fs = store.fs  # type: ignore[attr-defined]
    root = store.root.lstrip("/")  # type: ignore[attr-defined]
    fs.invalidate_cache()
    try:
        found = fs.find(store.root)  # type: ignore[attr-defined]
    except FileNotFoundError:
        return []
    return sorted(str(p).lstrip("/")[len(root) + 1 :] for p in found)


# -- S3 through moto's standalone server on 127.0.0.1 --------------------------------------

BUCKET = "runyard-blobs"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        # Dummy credentials, no config files, no instance metadata, no proxy: nothing
        # may leave 127.0.0.1 and nothing of the developer's AWS set-up is read.
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        env.setenv("AWS_CONFIG_FILE", str(home / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY",
                     "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.delenv(name, raising=False)
        env.setenv("NO_PROXY", "127.0.0.1")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            server.stop()


class TestS3BlobStore(BlobStoreContract):
    exact_created = False

    @pytest.fixture
    def location(self, s3_server: str) -> str:
        assert s3_server.startswith("http://127.0.0.1:")
        return f"s3://{BUCKET}/t-{uuid.uuid4().hex}"

    def all_keys(self, store: BlobStore) -> list[str]:
        return _fsspec_keys(store)

    def test_explicit_endpoint_option(self, s3_server: str, location: str) -> None:
        store = open_blob_store(location, endpoint_url=s3_server, skip_instance_cache=True)
        digest = store.put(io.BytesIO(b"explicit")).sha256
        assert store.url(digest) == f"{location}/{blob_key(digest)}"
        assert open_blob_store(location).exists(digest)
