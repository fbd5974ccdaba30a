"""This machine's settings: the data directory, the admin token, "is this server local"."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from runyard import local


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2",
                                  "127.255.255.254", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert local.is_loopback_host(host)


@pytest.mark.parametrize("host", ["", "example.com", "10.0.0.1", "128.0.0.1", "0.0.0.0", "::",
                                  "localhost.example.com", "192.168.1.1"])
def test_other_hosts(host: str) -> None:
    assert not local.is_loopback_host(host)


@pytest.mark.parametrize(("url", "is_local"), [
    ("http://127.0.0.1:8470", True), ("http://127.0.0.5:8470/", True),
    ("http://localhost", True), ("https://[::1]:8443", True),
    ("http://runyard.example.com:8470", False), ("http://10.1.2.3", False),
    ("not a url", False), ("http://[bad", False),
])
def test_is_local_server(url: str, is_local: bool) -> None:
    assert local.is_local_server(url) is is_local


def test_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local.data_dir({"RUNYARD_DATA_DIR": str(tmp_path / "a"),
                           "XDG_DATA_HOME": str(tmp_path / "x")}) == tmp_path / "a"
    assert local.data_dir({"XDG_DATA_HOME": str(tmp_path / "x")}) == tmp_path / "x" / "runyard"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local.data_dir({}) == tmp_path / "home" / ".runyard"
    assert local.data_dir({"RUNYARD_DATA_DIR": "~/d"}) == tmp_path / "home" / "d"


def test_a_new_data_dir_is_private_an_existing_one_is_left_alone(tmp_path: Path) -> None:
    made = local.ensure_data_dir(tmp_path / "new" / "data")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    local.ensure_data_dir(mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755


def test_admin_token_round_trip_and_local_only(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    assert local.read_admin_token(directory) is None
    path = local.write_admin_token(directory, "ry_secret")
    assert path == directory / local.ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert local.read_admin_token(directory) == "ry_secret"
    assert local.local_token("http://127.0.0.3:8470", directory) == "ry_secret"
    assert local.local_token("http://server.example.com", directory) is None
