"""Logs, blobs, artifacts, checkpoints, blueprints, tokens, job keys and the delete cascade,
on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from runyard import errors
from runyard.queue import Queue
from runyard.store.base import Store

from ..support.factories import caps, submit


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _run(queue: Queue, **kw: Any) -> str:
    return str(submit(queue, **kw)["id"])


# ---------------------------------------------------------------- logs
def _send(store: Store, rid: str, text: str, sizes: list[int], attempt: int = 1,
          stream: str = "stdout") -> None:
    """Send ``text`` in chunks of ``sizes`` characters, at their UTF-8 byte offsets."""
    chunks, pos, off = [], 0, 0
    for n in sizes:
        part = text[pos:pos + n]
        chunks.append({"stream": stream, "offset": off, "data": part})
        pos += n
        off += len(part.encode())
    store.add_log_chunks(rid, attempt, chunks, at=1.0)


def test_logs_read_across_chunks_at_any_offset(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    text = "épöch 1 loss=0.5\n日本語 line\nplain ascii tail\n"
    _send(store, rid, text, [3, 7, 1, 12, 40])
    raw = text.encode()
    assert store.read_logs(rid) == {"data": text, "offset": 0, "next_offset": len(raw),
                                    "attempt": 1}
    for start in range(len(raw) + 1):
        try:
            want = raw[start:].decode()
        except UnicodeDecodeError:
            continue  # not a character boundary; readers only get boundaries back
        got = store.read_logs(rid, offset=start)
        assert got["data"] == want and got["next_offset"] == len(raw)
    # Small reads in a loop reassemble the stream and never split a character.
    parts, off = [], 0
    while True:
        r = store.read_logs(rid, offset=off, limit_bytes=5)
        if not r["data"]:
            break
        assert len(r["data"].encode()) <= 5
        parts.append(r["data"])
        off = r["next_offset"]
    assert "".join(parts) == text


def test_logs_idempotent_gaps_streams_attempts(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    store.add_log_chunks(rid, 1, [{"stream": "stdout", "offset": 0, "data": "abc"},
                                  {"stream": "stdout", "offset": 6, "data": "ghi"}], at=1.0)
    # Re-sent chunk: kept once, first version wins.
    assert store.add_log_chunks(rid, 1, [{"stream": "stdout", "offset": 0, "data": "abc"}],
                                at=2.0) == 0
    # A gap at 3: the read stops there.
    assert store.read_logs(rid) == {"data": "abc", "offset": 0, "next_offset": 3, "attempt": 1}
    store.add_log_chunks(rid, 1, [{"stream": "stdout", "offset": 3, "data": "de\x00"}], at=3.0)
    assert store.read_logs(rid)["data"] == "abcde\x1aghi"
    store.add_log_chunks(rid, 1, [{"stream": "stderr", "offset": 0, "data": "oops"}], at=1.0)
    assert store.read_logs(rid, stream="stderr")["data"] == "oops"
    store.add_log_chunks(rid, 2, [{"stream": "stdout", "offset": 0, "data": "second"}], at=1.0)
    assert store.read_logs(rid) == {"data": "second", "offset": 0, "next_offset": 6, "attempt": 2}
    assert store.read_logs(rid, attempt=1, offset=9)["data"] == ""
    assert store.read_logs(rid, attempt=1, offset=9)["next_offset"] == 9
    many = [{"stream": "stdout", "offset": i, "data": "x"} for i in range(300)]
    store.add_log_chunks(rid, 3, many, at=1.0)
    assert store.read_logs(rid, attempt=3) == {"data": "x" * 300, "offset": 0, "next_offset": 300,
                                               "attempt": 3}


@pytest.mark.parametrize(("chunk", "field"), [
    ({"stream": "stdlog", "offset": 0, "data": "x"}, "chunks[1].stream"),
    ({"stream": "stdout", "offset": -1, "data": "x"}, "chunks[1].offset"),
    ({"stream": "stdout", "offset": 5, "data": b"x"}, "chunks[1].data"),
    ({"stream": "stdout", "offset": 5, "data": ""}, "chunks[1].data"),
])
def test_bad_log_chunk_writes_nothing(store: Store, queue: Queue, chunk: dict[str, Any],
                                      field: str) -> None:
    rid = _run(queue)
    good = {"stream": "stdout", "offset": 0, "data": "ok"}
    with pytest.raises(errors.ValidationError) as exc:
        store.add_log_chunks(rid, 1, [good, chunk], at=1.0)
    assert exc.value.field == field
    assert store.read_logs(rid, attempt=1)["data"] == ""
    with pytest.raises(errors.ValidationError):
        store.read_logs(rid, stream="stdlog")
    with pytest.raises(errors.NotFound):
        store.read_logs("nope")


# ---------------------------------------------------------------- blobs and artifacts
def test_blobs_and_artifacts(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    s1, s2 = sha("one"), sha("two")
    assert store.add_blob(s1, 3)["size"] == 3
    assert store.add_blob(s1, 3)["created_at"] == store.get_blob(s1)["created_at"]  # type: ignore[index]
    assert store.get_blob(s2) is None
    a = store.add_artifact(rid, 1, "model.pt", "file", 3, s1)
    assert a["created"] is True and a["sha256"] == s1
    b = store.add_artifact(rid, 1, "model.pt", "file", 3, s2)  # re-upload replaces
    assert b["created"] is False and b["id"] == a["id"]
    store.add_artifact(rid, 2, "model.pt", "bundle", 3, s2)
    listed = store.list_artifacts(rid)
    assert [(x["attempt"], x["name"], x["sha256"]) for x in listed] == [
        (1, "model.pt", s2), (2, "model.pt", s2)]
    assert store.get_blob(s2) is not None  # registered by add_artifact
    assert store.unreferenced_blob_shas([s1, s2, s1]) == [s1]
    with pytest.raises(errors.Conflict):
        store.delete_blob(s2)
    assert store.delete_blob(s1) is True
    assert store.delete_blob(s1) is False


@pytest.mark.parametrize(("kw", "field"), [
    ({"kind": "tarball"}, "kind"), ({"sha256": "ABC"}, "sha256"), ({"size": -1}, "size"),
    ({"name": ""}, "name"),
])
def test_bad_artifact_writes_nothing(store: Store, queue: Queue, kw: dict[str, Any],
                                     field: str) -> None:
    rid = _run(queue)
    args = {"run_id": rid, "attempt": 1, "name": "a", "kind": "file", "size": 1,
            "sha256": sha("a")} | kw
    with pytest.raises(errors.ValidationError) as exc:
        store.add_artifact(**args)
    assert exc.value.field == field
    assert store.list_artifacts(rid) == []
    assert store.get_blob(sha("a")) is None


# ---------------------------------------------------------------- checkpoints
def test_checkpoints(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    c1 = store.add_checkpoint(rid, 1, 100, "incomplete", name="ckpt-100")
    c1b = store.add_checkpoint(rid, 1, 100, "complete", name="ckpt-100", sha256=sha("c1"),
                               size=10, metrics={"loss": 0.4})
    assert c1b["id"] == c1["id"] and c1b["status"] == "complete"
    assert c1b["metrics"] == {"loss": 0.4}
    c2 = store.add_checkpoint(rid, 1, 200, "complete", sha256=sha("c2"), size=10)
    store.add_checkpoint(rid, 2, 50, "complete", sha256=sha("c2"), size=10)
    assert [(c["attempt"], c["step"]) for c in store.list_checkpoints(rid)] == [
        (2, 50), (1, 100), (1, 200)]
    assert store.delete_checkpoints(rid, [c1["id"], c2["id"]]) == sorted([sha("c1"), sha("c2")])
    assert [c["step"] for c in store.list_checkpoints(rid)] == [50]
    assert store.unreferenced_blob_shas([sha("c1"), sha("c2")]) == [sha("c1")]
    with pytest.raises(errors.ValidationError) as exc:
        store.add_checkpoint(rid, 1, 300, "done")
    assert exc.value.field == "status"
    with pytest.raises(errors.ValidationError) as exc:
        store.add_checkpoint(rid, 1, 300, "complete", sha256=sha("x"))
    assert exc.value.field == "size"
    assert len(store.list_checkpoints(rid)) == 1


def test_deleted_checkpoints_take_their_uploads_along(store: Store, queue: Queue) -> None:
    rid = _run(queue)
    ids = {}
    # Steps 1 and 2 saved the same bytes to one file: one upload both checkpoints name.
    for step, name, blob in [(1, "ck/a.pt", "x"), (2, "ck/a.pt", "x"), (3, "ck/b.pt", "y"),
                             (4, "ck/c.pt", "z")]:
        store.add_artifact(rid, 1, name, "checkpoint", 1, sha(blob))
        ids[step] = store.add_checkpoint(rid, 1, step, "complete", name=name,
                                         sha256=sha(blob), size=1)["id"]
    store.add_artifact(rid, 1, "model.txt", "file", 1, sha("y"))  # a plain artifact, same blob
    assert store.delete_checkpoints(rid, [ids[1], ids[3]]) == sorted([sha("x"), sha("y")])
    # Step 2 still names ck/a.pt; the plain artifact is no checkpoint's upload.
    assert [(r["name"], r["kind"]) for r in store.list_artifacts(rid)] == [
        ("ck/a.pt", "checkpoint"), ("ck/c.pt", "checkpoint"), ("model.txt", "file")]
    assert store.unreferenced_blob_shas([sha("x"), sha("y")]) == []
    assert store.delete_checkpoints(rid, [ids[2], ids[4]]) == sorted([sha("x"), sha("z")])
    assert [r["name"] for r in store.list_artifacts(rid)] == ["model.txt"]
    assert store.unreferenced_blob_shas([sha("x"), sha("y"), sha("z")]) == sorted(
        [sha("x"), sha("z")])


# ---------------------------------------------------------------- blueprints and tokens
def test_blueprints(store: Store) -> None:
    assert store.list_blueprints() == []
    store.put_blueprint("mlp", ["python", "t.py", "{config_file}"], {"type": "object"},
                        {"min_ram_gib": 1}, source="fleet.toml")
    store.put_blueprint("mlp", ["python", "t2.py"], None, {})
    store.put_blueprint("cnn", ["python", "c.py"], None, {})
    assert [b["name"] for b in store.list_blueprints()] == ["cnn", "mlp"]
    mlp = store.get_blueprint("mlp")
    assert mlp is not None and mlp["command"] == ["python", "t2.py"]
    assert mlp["config_schema"] is None and mlp["source"] is None
    assert store.get_blueprint("nope") is None
    with pytest.raises(errors.ValidationError) as exc:
        store.put_blueprint("bad", [], None, {})
    assert exc.value.field == "command"
    assert store.get_blueprint("bad") is None


def test_tokens(store: Store) -> None:
    assert store.count_tokens() == 0
    t = store.create_token("alice", "operator", sha("secret-a"))
    assert t["role"] == "operator" and "token_hash" not in t
    store.create_token("ci", "worker", sha("secret-c"))
    with pytest.raises(errors.Conflict):
        store.create_token("alice", "viewer", sha("other"))
    with pytest.raises(errors.Conflict):
        store.create_token("bob", "viewer", sha("secret-a"))  # same secret twice
    with pytest.raises(errors.ValidationError) as exc:
        store.create_token("bob", "admin", sha("b"))
    assert exc.value.field == "role"
    found = store.token_by_hash(sha("secret-a"))
    assert found is not None and found["name"] == "alice" and "token_hash" not in found
    store.touch_token("alice", 123.0)
    assert store.token_by_hash(sha("secret-a"))["last_used_at"] == 123.0  # type: ignore[index]
    assert store.count_tokens() == 2
    assert store.revoke_token("alice") is True
    assert store.revoke_token("alice") is False
    assert store.token_by_hash(sha("secret-a")) is None
    assert store.count_tokens() == 1
    listed = store.list_tokens()
    assert [x["name"] for x in listed] == ["alice", "ci"]
    assert all("token_hash" not in x for x in listed)
    assert listed[0]["revoked_at"] is not None
    # A revoked name can be reused by a new token.
    store.create_token("alice", "user", sha("secret-a2"))
    assert store.token_by_hash(sha("secret-a2"))["role"] == "user"  # type: ignore[index]


def test_job_keys(store: Store, queue: Queue) -> None:
    _run(queue)  # no job key: not listed
    a = submit(queue, "a", job_key="a" * 64, source="fleet.toml")
    b = submit(queue, "b", job_key="b" * 64, source="other.toml")
    assert store.job_keys() == {"a" * 64: {"id": a["id"], "status": "queued", "name": "a"},
                                "b" * 64: {"id": b["id"], "status": "queued", "name": "b"}}
    assert list(store.job_keys("fleet.toml")) == ["a" * 64]
    assert store.job_keys("missing.toml") == {}


# ---------------------------------------------------------------- delete cascade
def test_queue_delete_removes_everything_the_run_owns(store: Store, queue: Queue) -> None:
    queue.fleet.register(caps("h1"))
    rid = _run(queue)
    keep = _run(queue)
    claim = queue.claim("h1")
    assert claim is not None and claim.run["id"] == rid
    store.add_metric_points(rid, 1, [{"step": 1, "tag": "loss", "value": 1.0}])
    store.add_metric_points(keep, 1, [{"step": 1, "tag": "loss", "value": 1.0}])
    store.add_log_chunks(rid, 1, [{"stream": "stdout", "offset": 0, "data": "hi"}], at=1.0)
    store.add_artifact(rid, 1, "out.txt", "file", 2, sha("only-mine"))
    store.add_artifact(rid, 1, "shared.txt", "file", 2, sha("shared"))
    store.add_artifact(keep, 0, "shared.txt", "file", 2, sha("shared"))
    store.add_checkpoint(rid, 1, 5, "complete", sha256=sha("ckpt"), size=4)
    queue.complete(claim.attempt_id, claim.lease)
    orphans = queue.delete(rid)
    assert orphans == sorted([sha("only-mine"), sha("ckpt")])
    assert store.list_metric_points(rid) == []
    assert store.list_artifacts(rid) == [] and store.list_checkpoints(rid) == []
    assert store.read_logs(keep)["data"] == ""
    with pytest.raises(errors.NotFound):
        store.read_logs(rid)
    assert store.count_metric_points() == 1
    assert len(store.list_artifacts(keep)) == 1


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "-ended_at", "ended_at", "priority",
                                  "name"])
def test_keyset_pages_walk_every_run_once_in_order(store: Store, queue: Queue, sort: str
                                                   ) -> None:
    """Pages of 3 over runs with tied sort values (and NULLs for ended_at) visit each run
    exactly once, in the order of one unpaged listing."""
    from runyard.store.base import RunFilter

    ids = [submit(queue, f"r{i % 4}", priority=i % 3)["id"] for i in range(14)]
    with store.transaction() as tx:  # ties: several runs share one created_at
        for i, rid in enumerate(ids):
            tx.update_run(rid, {"created_at": 1000.0 + i // 3,
                                "ended_at": None if i % 4 == 0 else 50.0 + i % 5})
    everything = [r["id"] for r in store.list_runs(RunFilter(), limit=100, sort=sort)]
    assert sorted(everything) == sorted(ids)
    walked: list[str] = []
    after = None
    while True:
        page = store.list_runs(RunFilter(), limit=3, sort=sort, after_id=after)
        walked += [r["id"] for r in page]
        if len(page) < 3:
            break
        after = page[-1]["id"]
    assert walked == everything
