"""``runyard manifest reload`` end to end: a real server on SQLite and PostgreSQL, the real CLI.

Idempotency, edited and removed jobs, host policies updated in place, schema files sent with
the manifest, and an invalid manifest that changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..support.server_api import admin, error_of

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

SCHEMA = {"type": "object", "required": ["lr"], "additionalProperties": False,
          "properties": {"lr": {"type": "number", "exclusiveMinimum": 0},
                         "hidden": {"type": "integer", "minimum": 1}}}

MANIFEST = """\
[[hosts]]
id = "gpu-box"
allow = ["mlp-*"]
slots = 2

[[blueprints]]
name = "mlp"
command = ["python", "train.py", "--config", "{config_file}", "--seed", "{seed}"]
config_schema_file = "schemas/mlp.json"

[[jobs]]
name = "mlp-small"
blueprint = "mlp"
config = { lr = 0.01, hidden = 16 }
seed = 0

[[jobs]]
name = "mlp-large"
blueprint = "mlp"
config = { lr = 0.001, hidden = 256 }
seed = 1
min_ram_gib = 4
"""


def write(folder: Path, text: str = MANIFEST) -> Path:
    (folder / "schemas").mkdir(parents=True, exist_ok=True)
    (folder / "schemas" / "mlp.json").write_text(json.dumps(SCHEMA))
    path = folder / "fleet.toml"
    path.write_text(text)
    return path


def cli(server: Any, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": server.admin_token,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "runyard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def reload(server: Any, path: Path, *extra: str, cwd: Path | None = None) -> dict[str, Any]:
    res = cli(server, "manifest", "reload", str(path), "--json", *extra, cwd=cwd or path.parent)
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def runs(server: Any) -> dict[str, dict[str, Any]]:
    api = admin(server)
    try:
        items = api.ok("GET", "/v1/runs", params={"limit": 100})["items"]
        return {r["id"]: r for r in items}
    finally:
        api.close()


def test_reload_is_idempotent_and_dry_run_changes_nothing(live_server, tmp_path: Path) -> None:
    path = write(tmp_path / "m")
    plan = reload(live_server, path, "--dry-run")
    assert plan["dry_run"] is True
    assert [j["name"] for j in plan["new"]] == ["mlp-small", "mlp-large"]
    assert [h["id"] for h in plan["hosts_changed"]] == ["gpu-box"]
    assert runs(live_server) == {}

    applied = reload(live_server, path)
    assert len(applied["new"]) == 2 and applied["unchanged"] == []
    before = runs(live_server)
    assert sorted(r["name"] for r in before.values()) == ["mlp-large", "mlp-small"]
    assert {r["seed"] for r in before.values()} == {0, 1}

    # Reloading the same file, from another folder, changes nothing at all.
    again = reload(live_server, path, cwd=tmp_path)
    assert again["new"] == [] and len(again["unchanged"]) == 2
    assert again["removed"] == [] and again["hosts_changed"] == []
    assert runs(live_server) == before

    res = cli(live_server, "blueprints", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "mlp" in res.stdout and "hidden, lr" in res.stdout


def test_edited_job_is_a_new_run_and_removed_job_stays(live_server, tmp_path: Path) -> None:
    path = write(tmp_path / "m")
    reload(live_server, path)
    api = admin(live_server)
    small = next(r for r in runs(live_server).values() if r["name"] == "mlp-small")
    claim = api.claim("gpu-box", ram_gib=2)  # mlp-large needs 4 GiB: this takes mlp-small
    assert claim is not None and claim["run"]["id"] == small["id"]
    assert claim["seed"] == 0

    edited = MANIFEST.replace("lr = 0.01, hidden = 16", "lr = 0.02, hidden = 16")
    edited = edited.split("[[jobs]]\nname = \"mlp-large\"")[0]  # and mlp-large removed
    edited = edited.replace("slots = 2", "slots = 3")
    path.write_text(edited)
    out = reload(live_server, path)
    assert [j["name"] for j in out["new"]] == ["mlp-small"]
    assert len(out["removed"]) == 2  # the old mlp-small key and mlp-large's
    assert [(h["id"], h["slots"]) for h in out["hosts_changed"]] == [("gpu-box", 3)]
    after = runs(live_server)
    assert len(after) == 3  # nothing deleted: removed jobs stay until cancelled
    assert after[small["id"]]["status"] == "claimed"  # the old run keeps its state
    new = [r for r in after.values() if r["name"] == "mlp-small" and r["id"] != small["id"]]
    assert len(new) == 1 and new[0]["status"] == "queued" and new[0]["config"]["lr"] == 0.02
    again = reload(live_server, path)
    assert again["new"] == [] and again["hosts_changed"] == []
    api.close()


def test_invalid_manifest_changes_nothing(live_server, tmp_path: Path) -> None:
    bad = MANIFEST.replace("lr = 0.001", "lr = -1").replace("hidden = 16", "hidden = 0")
    path = write(tmp_path / "m", bad)
    res = cli(live_server, "manifest", "reload", str(path), cwd=path.parent)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert any(ln.startswith(f"{path}:14: jobs[0].config.hidden: 0 is less than") for ln in lines)
    assert any(ln.startswith(f"{path}:20: jobs[1].config.lr: -1 is less than") for ln in lines)
    assert runs(live_server) == {}

    # The server checks on its own too: a body without the schema file is refused whole.
    api = admin(live_server)
    r = api.post("/v1/manifest/reload", {"text": MANIFEST, "source": "fleet.toml"})
    assert r.status_code == 422
    err = error_of(r)
    assert err["type"] == "ManifestError"
    assert "blueprints[0].config_schema_file" in err["message"]
    assert "not sent with the manifest" in err["message"]
    assert runs(live_server) == {}
    api.close()


def test_a_user_cannot_squat_a_job_key(live_server, tmp_path: Path) -> None:
    """A user who submits with a manifest job's key (computable by anyone who reads the
    manifest) and another command would make the operator's reload call the real job
    unchanged: only operators, and the reload, set job keys."""
    from runyard.manifest import load_manifest

    path = write(tmp_path / "m")
    key = next(j.key for j in load_manifest(path).jobs if j.name == "mlp-small")
    api = admin(live_server)
    user = api.__class__(live_server, api.token("mallory", "user"))
    try:
        r = user.post("/v1/runs", {"name": "mlp-small", "command": ["sh", "-c", "steal"],
                                   "job_key": key})
        assert r.status_code == 403, r.text
        assert error_of(r)["field"] == "job_key" and "job_key" in error_of(r)["message"]
        assert runs(live_server) == {}
        applied = reload(live_server, path)
        assert sorted(j["name"] for j in applied["new"]) == ["mlp-large", "mlp-small"]
        assert applied["unchanged"] == []
        small = [r for r in runs(live_server).values() if r["name"] == "mlp-small"]
        assert len(small) == 1 and small[0]["command"][0] == "python"
        # An operator may still queue by key (what a reload does), idempotently.
        again = api.post("/v1/runs", {"name": "mlp-small", "command": ["x"], "job_key": key})
        assert again.status_code == 201 and again.json()["id"] == small[0]["id"]
    finally:
        user.close()
        api.close()
