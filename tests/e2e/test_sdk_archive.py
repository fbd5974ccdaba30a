"""Runs started by hand record where they ran and where their artifacts are, and archive their
artifact directory on request: at the end in HTTP mode, on ``runyard sync`` otherwise. Real
``runyard server`` processes, real SQLite files; the blobs are looked for in the server's
store on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import sdk
from runyard.artifacts import archive, extract_archive
from runyard.client import Client
from runyard.sdk import choose, http_sink, settings
from runyard.sdk.notice import RunyardWarning
from runyard.store import default_url, open_store

from ..support.agents import Api
from ..support.live_server import LiveServer
from ..support.thread_server import ThreadServer

REPO = Path(__file__).resolve().parents[2]

FILES = {"model.txt": b"weights" * 50, "plots/loss.svg": b"<svg/>", "plots/deep/x.json": b"{}"}


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


def http_env(server: LiveServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": server.admin_token,
            "RUNYARD_DATA_DIR": str(tmp_path / "data"), "RUNYARD_SYS_INTERVAL_S": "0", **extra}


def embedded_env(data: Path, **extra: str) -> dict[str, str]:
    return {"RUNYARD_DATA_DIR": str(data), "RUNYARD_SYS_INTERVAL_S": "0", **extra}


def fill(directory: Path | None) -> None:
    """What a training script leaves in its artifact directory."""
    assert directory is not None
    for name, data in FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def store_of(server: LiveServer) -> Path:
    return (server.data_dir / "artifacts").absolute()


def archived_files(api: Api, server: LiveServer, run_id: str, dest: Path) -> dict[str, bytes]:
    """The run's bundle as the server's store holds it on disk, unpacked."""
    items = api.http.get(f"/v1/runs/{run_id}/artifacts").json()["items"]
    (bundle,) = [a for a in items if a["name"] == "artifacts.tar.zst"]
    assert bundle["kind"] == "bundle"
    sha = bundle["sha256"]
    blob = store_of(server) / sha[:2] / sha[2:4] / sha
    assert blob.stat().st_size == bundle["size"]
    assert api.http.get(f"/v1/blobs/{sha}").content == blob.read_bytes()
    extract_archive(blob, dest)
    return {p.relative_to(dest).as_posix(): p.read_bytes()
            for p in sorted(dest.rglob("*")) if p.is_file()}


def runyard(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PYTHONPATH"] = str(REPO)
    # Narrower than the paths shown: a pipe still gets each value on one line.
    env["COLUMNS"] = "60"
    return subprocess.run([sys.executable, "-m", "runyard", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def sync(data: Path, server: LiveServer) -> dict[str, list[str]]:
    proc = runyard("sync", "--server", server.url, "--token", server.admin_token,
                   "--data-dir", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    report: dict[str, list[str]] = json.loads(proc.stdout)
    return report


# --------------------------------------------------------------------------- HTTP mode


def test_an_http_run_archives_its_artifacts_at_its_end(server: LiveServer, api: Api,
                                                       tmp_path: Path) -> None:
    with sdk.start_run(name="archived", project="arch", env=http_env(server, tmp_path),
                       archive=True, handle_sigterm=False) as run:
        assert run.mode == "http" and run.archive and run.id == run.run_id
        fill(run.artifact_dir)
        run.log({"loss": 1.0}, step=0)
    got = api.run(run.id)
    assert got["status"] == "completed"
    assert got["archived"] is True and got["artifact_store"] == store_of(server).as_uri()
    # Where it ran: this machine's host, as a local run, in this process's directory.
    assert (got["executor"], got["host_id"]) == ("local", f"local/{socket.gethostname()}")
    assert got["workdir"] == os.getcwd()
    assert [a["workdir"] for a in got["attempts"]] == [os.getcwd()]
    assert archived_files(api, server, run.id, tmp_path / "out") == FILES
    (event,) = [e for e in api.events(run.id) if e["kind"] == "archived"]
    assert event["details"] == {"artifact_store": store_of(server).as_uri(), "attempt": 1}
    with Client(server=server.url, token=server.admin_token) as client:  # the Client too
        seen = client.get_run(run.id)
        assert seen.archived and seen.artifact_store == store_of(server).as_uri()
        assert seen.attempts is not None and seen.attempts[0].workdir == os.getcwd()
        stale = dataclasses.replace(seen, archived=False, artifact_store=None)
        assert stale.reload(fields=["archived", "artifact_store"]) == seen
    shown = runyard("show", run.id, "--server", server.url, "--token", server.admin_token)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"archived\s+yes", shown.stdout)
    assert re.search(rf"artifacts\s+{re.escape(store_of(server).as_uri())}", shown.stdout)
    assert re.search(rf"workdir\s+{re.escape(os.getcwd())}", shown.stdout)


def test_an_unarchived_run_names_its_local_directory(server: LiveServer, api: Api,
                                                     tmp_path: Path) -> None:
    with sdk.start_run(name="kept-local", env=http_env(server, tmp_path),
                       handle_sigterm=False) as kept:
        assert not kept.archive  # off unless asked for
        fill(kept.artifact_dir)
    got = api.run(kept.id)
    assert got["archived"] is False and got["artifact_store"] == str(kept.artifact_dir)
    items = api.http.get(f"/v1/runs/{kept.id}/artifacts").json()["items"]
    assert items == []  # nothing left the machine
    shown = runyard("show", kept.id, "--server", server.url, "--token", server.admin_token)
    assert re.search(r"archived\s+no", shown.stdout), shown.stdout

    env = http_env(server, tmp_path, RUNYARD_ARCHIVE="1")
    with sdk.start_run(name="by-env", env=env, handle_sigterm=False) as by_env:
        assert by_env.archive
        fill(by_env.artifact_dir)
    assert api.run(by_env.id)["archived"] is True
    with sdk.start_run(name="arg-wins", env=env, archive=False, handle_sigterm=False) as off:
        fill(off.artifact_dir)
    assert api.run(off.id)["archived"] is False


def test_what_cannot_be_archived_is_warned_about(server: LiveServer, api: Api,
                                                tmp_path: Path) -> None:
    with pytest.warns(RunyardWarning) as caught:
        with sdk.start_run(name="no-dir", env=http_env(server, tmp_path), archive=True,
                           handle_sigterm=False) as gone:
            assert gone.artifact_dir is not None
            shutil.rmtree(gone.artifact_dir)  # the script removed its artifact directory
        with sdk.start_run(name="empty", env=http_env(server, tmp_path), archive=True,
                           handle_sigterm=False) as empty:
            pass
        with sdk.start_run(name="odd", env=http_env(server, tmp_path,
                                                    RUNYARD_ARCHIVE="sometimes"),
                           handle_sigterm=False) as odd:
            fill(odd.artifact_dir)
    said = [str(w.message) for w in caught]
    assert f"runyard: run {gone.id} is not archived: the artifact directory " \
           f"{gone.artifact_dir} does not exist" in said
    assert f"runyard: run {empty.id} is not archived: its artifact directory " \
           f"{empty.artifact_dir} is empty" in said
    assert any("RUNYARD_ARCHIVE='sometimes' is not one of" in s for s in said)
    for run in (gone, empty, odd):
        got = api.run(run.id)  # the run itself is recorded as it ended
        assert got["status"] == "completed" and got["archived"] is False, got
        assert got["artifact_store"] == str(run.artifact_dir)


def test_a_file_removed_while_it_is_packed_is_left_out(server: LiveServer, api: Api,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A process still writing its artifact directory (a data loader's worker, a logger)
    removes a file between the listing and the packing: the rest is archived."""
    walk = archive._walk

    def racing(root: Path, skip: Path, prefix: str = ""):  # type: ignore[no-untyped-def]
        for arcname, full in walk(root, skip, prefix):
            if arcname == "model.txt":
                full.unlink()
            yield arcname, full

    monkeypatch.setattr(archive, "_walk", racing)
    with sdk.start_run(name="racing", env=http_env(server, tmp_path), archive=True,
                       handle_sigterm=False) as run:
        fill(run.artifact_dir)
    assert api.run(run.id)["archived"] is True
    kept = {k: v for k, v in FILES.items() if k != "model.txt"}
    assert archived_files(api, server, run.id, tmp_path / "out") == kept


def test_an_unreachable_server_at_the_end_leaves_the_archive_to_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_sink, "CLOSE_WAIT_S", 0.5)
    settings.configure(retry_interval_s=0.1)
    server = LiveServer(tmp_path / "server").start()
    api = Api(server)
    try:
        with pytest.warns(RunyardWarning) as caught, \
                sdk.start_run(name="late", env=http_env(server, tmp_path), archive=True,
                              handle_sigterm=False) as run:
            fill(run.artifact_dir)
            run.log({"loss": 0.0}, step=0)
            server.kill()  # gone before the run ends
        said = " ".join(str(w.message) for w in caught)
        assert f"run {run.id} is not archived yet: its artifacts stay in " \
               f"{run.artifact_dir} and `runyard sync` archives them" in said
        assert run.artifact_dir is not None and (run.artifact_dir / "model.txt").is_file()
        server.start()
        assert api.run(run.id)["archived"] is False
        report = sync(tmp_path / "data", server)
        assert report["spools_sent"] == [run.id] and report["archived"] == [run.id]
        assert report["problems"] == []
        got = api.run(run.id)
        assert got["status"] == "completed" and got["archived"] is True
        assert got["artifact_store"] == store_of(server).as_uri()
        assert archived_files(api, server, run.id, tmp_path / "out") == FILES
    finally:
        api.close()
        server.stop()


# --------------------------------------------------------------------------- embedded / files


def test_sync_archives_the_embedded_and_file_runs_that_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    with sdk.start_run(name="emb", env=embedded_env(data), archive=True,
                       handle_sigterm=False) as emb:
        assert emb.mode == "embedded"
        fill(emb.artifact_dir)
    with sdk.start_run(name="plain", env=embedded_env(data), handle_sigterm=False) as plain:
        fill(plain.artifact_dir)
    with sdk.start_run(name="gone", env=embedded_env(data, RUNYARD_ARCHIVE="1"),
                       handle_sigterm=False) as gone:
        fill(gone.artifact_dir)
    assert gone.artifact_dir is not None
    shutil.rmtree(gone.artifact_dir)  # removed before the sync: nothing to archive
    monkeypatch.setattr(choose, "embedded_available", lambda: False)  # as without SQLAlchemy
    with sdk.start_run(name="files", env=embedded_env(data), archive=True,
                       handle_sigterm=False) as files:
        assert files.mode == "local"
        fill(files.artifact_dir)
    monkeypatch.undo()

    local = open_store(default_url(data))
    try:  # before any sync: where its files are, here, not archived
        row = local.get_run(emb.id)
        assert row is not None and row["artifact_store"] == str(emb.artifact_dir)
        assert row["archived"] is False and row["workdir"] == os.getcwd()
        assert [a["workdir"] for a in local.list_attempts(emb.id)] == [os.getcwd()]
    finally:
        local.close()

    remote = ThreadServer(tmp_path / "remote").start()
    api = Api(remote)
    try:
        report = sync(data, remote)
        assert sorted(report["created"]) == sorted([emb.id, plain.id, gone.id, files.id])
        assert sorted(report["archived"]) == sorted([emb.id, files.id])
        assert report["problems"] == [f"run {gone.id}: not archived: the artifact directory "
                                      f"{gone.artifact_dir} does not exist"]
        for run in (emb, files):
            got = api.run(run.id)
            assert got["archived"] is True and got["artifact_store"] == store_of(remote).as_uri()
            # Where it ran, whichever way it was recorded.
            assert (got["executor"], got["host_id"]) == ("local", f"local/{socket.gethostname()}")
            assert got["workdir"] == os.getcwd()
            assert [a["workdir"] for a in got["attempts"]] == [os.getcwd()]
            assert archived_files(api, remote, run.id, tmp_path / run.id) == FILES
        for run in (plain, gone):  # synced all the same; their files stayed where they were
            got = api.run(run.id)
            assert got["status"] == "completed" and got["archived"] is False
            assert got["artifact_store"] == str(run.artifact_dir)
        runs = api.http.get("/v1/runs", params={"limit": 100}).json()["items"]
        events = {r["id"]: len(api.events(r["id"])) for r in runs}

        again = sync(data, remote)  # synced before: skipped
        assert sorted(again["skipped"]) == sorted(events) and again["archived"] == []
        (data / "synced.json").unlink()  # resent: archived again, nothing new on the server
        resent = sync(data, remote)
        assert sorted(resent["archived"]) == sorted([emb.id, files.id])
        assert {r: len(api.events(r)) for r in events} == events
        assert len(api.http.get(f"/v1/runs/{emb.id}/artifacts").json()["items"]) == 1
    finally:
        api.close()
        remote.stop()


def test_a_run_takes_its_project_from_its_directory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    checkout = tmp_path / "vision-exp"
    (checkout / ".git").mkdir(parents=True)
    work = checkout / "resnet"
    work.mkdir()
    monkeypatch.chdir(work)
    made = {}
    with sdk.start_run(name="a", env=embedded_env(data), handle_sigterm=False) as run:
        made[run.id] = "resnet"  # no file: the directory's name
    (checkout / "runyard.toml").write_text('project = "vision"\n')
    with sdk.start_run(name="b", env=embedded_env(data), handle_sigterm=False) as run:
        made[run.id] = "vision"
    with sdk.start_run(name="c", env=embedded_env(data, RUNYARD_PROJECT="from-env"),
                       handle_sigterm=False) as run:
        made[run.id] = "from-env"
    with sdk.start_run(name="d", project="given",
                       env=embedded_env(data, RUNYARD_PROJECT="from-env"),
                       handle_sigterm=False) as run:
        made[run.id] = "given"
    assert run.project == "given"
    store = open_store(default_url(data))
    try:
        rows = {r: store.get_run(r) for r in made}
        assert {r: row["project"] for r, row in rows.items() if row} == made
        assert {row["workdir"] for row in rows.values() if row} == {str(work)}
    finally:
        store.close()
