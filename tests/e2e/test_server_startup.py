"""Starting and stopping ``runyard server``: bind safety, TLS, first-start token, SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..support.live_server import LiveServer, free_port

#: After a graceful shutdown uvicorn re-raises the signal that asked for it, so the exit
#: status says "terminated by SIGTERM" as service managers expect; a crash would be 1.
STOPPED = (0, -signal.SIGTERM)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "without TLS"),
    (["--host", "192.168.1.10", "--no-auth", "--tls-cert", "c", "--tls-key", "k"], None),
    (["--host", "0.0.0.0", "--no-auth"], "without authentication"),
    (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key"),
    (["--stale-after-s", "0"], "--stale-after-s"),
    (["--forget-workers-after-s", "-1"], "--forget-workers-after-s"),
    (["--public-url", "ftp://runyard.example"], "--public-url: only http and https"),
    (["--notify-timeout-s", "0"], "--notify-timeout-s"),
    (["--notify-max-attempts", "0"], "--notify-max-attempts"),
    (["--notify-backoff-s", "-1"], "--notify-backoff-s"),
    (["--notify-concurrency", "0"], "--notify-concurrency"),
])
def test_unsafe_or_bad_settings_are_refused(tmp_path: Path, args: list[str],
                                            message: str | None) -> None:
    out = run_cli("server", "--data-dir", str(tmp_path), "--port", str(free_port()), *args)
    assert out.returncode == 2, out
    line = out.stderr.strip()
    assert line.startswith("runyard: ") and "\n" not in line and "Traceback" not in line
    if message:
        assert message in line
    assert not (tmp_path / "runyard.db").exists()  # refused before touching anything


def test_a_short_admin_token_is_refused(tmp_path: Path) -> None:
    out = run_cli("server", "--data-dir", str(tmp_path), "--port", str(free_port()),
                  env={"RUNYARD_ADMIN_TOKEN": "short-but-16-chars"})
    assert out.returncode == 2, out
    assert "RUNYARD_ADMIN_TOKEN: at least 32 characters" in out.stderr
    assert not (tmp_path / "runyard.db").exists()


def test_first_start_writes_the_admin_token_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUNYARD_ADMIN_TOKEN"}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "runyard", "server", "--data-dir",
                             str(tmp_path), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        path = tmp_path / "admin-token"
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        secret = path.read_text().strip()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/tokens",
                      headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200 and r.json()["items"][0]["name"] == "admin"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode in STOPPED, output
    assert str(path) in output and secret not in output


def test_env_options_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {"RUNYARD_PORT": str(port), "RUNYARD_DATA_DIR": str(tmp_path),
           "RUNYARD_ARTIFACTS": str(tmp_path / "blobs"), "RUNYARD_ADMIN_TOKEN": "t" * 32}
    proc = subprocess.Popen([sys.executable, "-m", "runyard", "server"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert (tmp_path / "runyard.db").exists()
        assert not (tmp_path / "admin-token").exists()
        # An open event stream must not hold up the shutdown for long.
        with httpx.Client(timeout=5) as c, c.stream(
                "GET", f"http://127.0.0.1:{port}/v1/events/stream",
                headers={"Authorization": "Bearer " + "t" * 32}) as resp:
            assert resp.status_code == 200
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0]
    assert proc.returncode in STOPPED, out
    assert f"http://127.0.0.1:{port}" in out and str(tmp_path / "blobs") in out


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30,
                  **kw: object) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(f"{url}/v1/health", timeout=1, **kw).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = LiveServer(tmp_path / "s", extra_args=["--tls-cert", str(cert),
                                                    "--tls-key", str(key)])
    port = server.port
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "server", "--port", str(port), "--data-dir",
         str(tmp_path / "s"), "--tls-cert", str(cert), "--tls-key", str(key)],
        env={**os.environ, "RUNYARD_ADMIN_TOKEN": server.admin_token},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"https://127.0.0.1:{port}"
        _wait_healthy(url, proc, verify=str(cert))
        r = httpx.get(f"{url}/v1/runs", headers=server.headers(), verify=str(cert))
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port fails
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode in STOPPED


def test_migrated_on_start_and_restart_keeps_data(sqlite_server) -> None:  # type: ignore[no-untyped-def]
    h = sqlite_server.headers()
    r = httpx.post(f"{sqlite_server.url}/v1/runs", headers=h,
                   json={"name": "kept", "command": ["true"]})
    assert r.status_code == 201
    sqlite_server.restart()
    r = httpx.get(f"{sqlite_server.url}/v1/runs", headers=h)
    assert [x["name"] for x in r.json()["items"]] == ["kept"]
