"""A ``config_schema_file`` is read only from inside the manifest's folder: an absolute path,
a ``..`` path or a symlink pointing out is refused (naming file, line and key) and never read,
neither when validating locally nor when building the body ``runyard manifest reload`` sends
(whatever it sends is stored where every viewer can read it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from runyard import errors
from runyard.manifest import load_manifest, request_body

from ..support.server_api import admin

SECRET = {"type": "object", "description": "secret-token-0123456789"}


def manifest(folder: Path, schema_file: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fleet.toml"
    path.write_text('project = "p"\n\n[[blueprints]]\nname = "b"\ncommand = ["x"]\n'
                    f"config_schema_file = {json.dumps(schema_file)}\n", encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A JSON file that is a valid schema, outside the manifest's folder."""
    path = tmp_path / "private" / "credentials.json"
    path.parent.mkdir()
    path.write_text(json.dumps(SECRET), encoding="utf-8")
    return path


def cases(tmp_path: Path, outside: Path) -> dict[str, Path]:
    folder = tmp_path / "project"
    link_folder = tmp_path / "linked"
    link_folder.mkdir()
    (link_folder / "schema.json").symlink_to(outside)
    return {
        "absolute": manifest(folder / "abs", str(outside)),
        "dotdot": manifest(folder / "dots", "../../private/credentials.json"),
        "symlink": manifest(link_folder, "schema.json"),
    }


def refused(call: Callable[[], object], path: Path) -> dict[str, object]:
    with pytest.raises(errors.ManifestError) as info:
        call()
    item = info.value.errors[0]
    assert item["file"] == str(path) or item["file"] == str(path.resolve()), item
    assert item["line"] == 6 and item["field"] == "blueprints[0].config_schema_file", item
    assert "outside the manifest's folder" in str(item["message"]), item
    assert "secret-token" not in str(info.value.errors)
    return item


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink"])
def test_validation_refuses_a_schema_file_outside_the_folder(
        tmp_path: Path, outside: Path, case: str) -> None:
    path = cases(tmp_path, outside)[case]
    refused(lambda: load_manifest(path), path)


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink"])
def test_the_reload_body_never_carries_a_file_outside_the_folder(
        tmp_path: Path, outside: Path, case: str) -> None:
    path = cases(tmp_path, outside)[case]
    refused(lambda: request_body(path), path)


def test_files_inside_the_folder_and_its_subfolders_are_read(tmp_path: Path) -> None:
    for name in ("schemas/s.json", "schemas/../schemas/s.json", "./schemas/s.json"):
        path = manifest(tmp_path / "ok", name)
        (tmp_path / "ok" / "schemas").mkdir(exist_ok=True)
        (tmp_path / "ok" / "schemas" / "s.json").write_text('{"type": "object"}',
                                                            encoding="utf-8")
        assert load_manifest(path).blueprints[0].config_schema == {"type": "object"}
        assert request_body(path)["files"] == {name: '{"type": "object"}'}


def test_the_server_refuses_such_names_sent_with_a_manifest(app_server) -> None:  # type: ignore[no-untyped-def]
    api = admin(app_server)
    try:
        text = ('[[blueprints]]\nname = "b"\ncommand = ["x"]\n'
                'config_schema_file = "/etc/runyard/schema.json"\n')
        r = api.post("/v1/manifest/reload", {"text": text, "source": "fleet.toml",
                                             "files": {"/etc/runyard/schema.json": "{}"}})
        assert r.status_code == 422, r.text
        item = r.json()["error"]["errors"][0]
        assert item["line"] == 4 and item["field"] == "blueprints[0].config_schema_file"
        assert "outside the manifest's folder" in item["message"]
        assert api.ok("GET", "/v1/blueprints")["items"] == []
    finally:
        api.close()
