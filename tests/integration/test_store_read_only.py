"""An embedded store opened read-only (what the CLI reads with no server): a real SQLite file
reads as usual, refuses every write itself, and opening it creates nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.store import RunFilter, default_url, open_store
from runyard.store.engine import sqlite_read_only_url

from ..support.factories import submit


@pytest.mark.parametrize("dirname", ["data", "odd name %20 ?x=1 #frag"])
def test_reads_work_and_writes_are_refused(tmp_path: Path, dirname: str) -> None:
    data = tmp_path / dirname
    writer = open_store(default_url(data))
    run = submit(Queue(writer), "kept")
    writer.close()
    db = data / "runyard.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    reader = open_store(sqlite_read_only_url(db), upgrade=False)
    try:
        assert reader.current_revision() is not None
        found = reader.get_run(run["id"])
        assert found is not None and found["name"] == "kept"
        assert [r["id"] for r in reader.list_runs(RunFilter(), limit=10)] == [run["id"]]
        with pytest.raises(errors.StoreError, match="readonly"):
            submit(Queue(reader), "refused")
    finally:
        reader.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "runyard.db"
    reader = open_store(sqlite_read_only_url(db), upgrade=False)
    try:
        with pytest.raises(errors.StoreError):
            reader.get_run("0" * 22)
    finally:
        reader.close()
    assert not (tmp_path / "nowhere").exists()
    assert list(tmp_path.iterdir()) == []  # no stray directory named after the URI either
