"""Capability detection: real probes on this machine, parsers on canned nvidia-smi output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runyard import errors, models
from runyard.agent import capabilities

NVIDIA_SMI_CSV = """\
0, NVIDIA GeForce RTX 4090, 24564, GPU-3b6e9f5a-1c2d-4e5f-8a9b-0c1d2e3f4a5b
1, NVIDIA A100-SXM4-80GB, 81920, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee

2, Tesla K80, [N/A], GPU-k80
"""

NVIDIA_SMI_BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def nvml_works() -> bool:
    try:
        capabilities.probe_gpus_nvml()
    except Exception:
        return False
    return True


@pytest.fixture(autouse=True)
def no_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(capabilities.FAKE_GPUS_ENV, raising=False)
    monkeypatch.delenv(capabilities.FAKE_RAM_ENV, raising=False)


# --- real detection -------------------------------------------------------------------------


def test_detect_on_this_machine() -> None:
    caps = capabilities.detect(labels={"rack": "b"}, slots=2)
    assert models.validate_name(caps.host_id, "host_id") == caps.host_id
    assert caps.hostname
    assert caps.os == platform.system() and caps.arch == platform.machine()
    assert 0 < caps.cpus <= (os.cpu_count() or 1)
    assert caps.ram_gib > 0
    assert caps.python == platform.python_version()
    assert caps.torch == capabilities.package_version("torch")
    assert caps.git_commit is None  # no workdir given
    assert caps.labels == {"rack": "b"} and caps.slots == 2
    assert isinstance(caps.extra["probe_notes"], list)
    assert "fake_gpus" not in caps.extra
    # What the agent sends survives the server's parsing unchanged.
    assert models.Capabilities.from_dict(caps.to_dict()) == caps


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has nvidia-smi")
def test_cpu_only_host_reports_why_there_are_no_gpus() -> None:
    if nvml_works():
        pytest.skip("NVML works here")
    caps = capabilities.detect()
    assert caps.gpus == () and not caps.has_cuda and caps.cuda_driver is None
    assert caps.extra["gpu_probe"] == "none"
    notes = " | ".join(caps.extra["probe_notes"])
    assert "NVML unavailable" in notes and "nvidia-smi unavailable" in notes
    report = capabilities.format_check(caps)
    assert "gpus         none (CPU only)" in report and "NVML unavailable" in report


def test_torch_version_comes_from_metadata_without_importing_it(tmp_path: Path) -> None:
    # A fake installed torch whose import would fail loudly.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise SystemExit('torch was imported')\n")
    dist = tmp_path / "torch-9.9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 9.9.9\n")
    code = textwrap.dedent("""
        import sys
        from runyard.agent import capabilities
        caps = capabilities.detect()
        print(caps.torch, "torch" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop(capabilities.FAKE_GPUS_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "9.9.9 False"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_of_a_checkout_and_its_absence(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print('hi')\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert capabilities.detect(workdir=repo).git_commit == head
    assert capabilities.detect(workdir=repo / ".").git_commit == head

    plain = tmp_path / "plain"
    plain.mkdir()
    caps = capabilities.detect(workdir=plain)
    assert caps.git_commit is None
    assert any(n.startswith("git: no commit") for n in caps.extra["probe_notes"])
    missing = capabilities.detect(workdir=tmp_path / "missing")
    assert missing.git_commit is None
    assert any("does not exist" in n for n in missing.extra["probe_notes"])


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(errors.ValidationError) as exc:
        capabilities.detect(host_id="bad host!")
    assert exc.value.field == "host_id"
    for slots in (0, -1, True, 1.5):
        with pytest.raises(errors.ValidationError) as exc:
            capabilities.detect(slots=slots)  # type: ignore[arg-type]
        assert exc.value.field == "slots"
    with pytest.raises(errors.ValidationError) as exc:
        capabilities.detect(labels={"gpu": 1})  # type: ignore[dict-item]
    assert exc.value.field == "labels"


@pytest.mark.parametrize(("hostname", "expected"), [
    ("gpu-box", "gpu-box"),
    ("gpu-box.lab.example.org", "gpu-box"),
    ("my host", "my-host"),
    ("-odd", "odd"),
    ("", "localhost"),
])
def test_default_host_id(hostname: str, expected: str) -> None:
    assert capabilities.default_host_id(hostname) == expected


def test_parse_labels() -> None:
    assert capabilities.parse_labels("gpu=a100, rack=3,,") == {"gpu": "a100", "rack": "3"}
    assert capabilities.parse_labels("") == {} and capabilities.parse_labels(None) == {}
    assert capabilities.parse_labels("empty=") == {"empty": ""}
    for bad in ("gpu", "=x", "a=b,c"):
        with pytest.raises(errors.ValidationError, match="labels: expected key=value"):
            capabilities.parse_labels(bad)


# --- nvidia-smi -----------------------------------------------------------------------------


def test_parse_nvidia_smi_csv() -> None:
    gpus = capabilities.parse_nvidia_smi_csv(NVIDIA_SMI_CSV)
    assert gpus == [
        models.GPU(0, "NVIDIA GeForce RTX 4090", 23.99, "GPU-3b6e9f5a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"),
        models.GPU(1, "NVIDIA A100-SXM4-80GB", 80.0, "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
        models.GPU(2, "Tesla K80", 0.0, "GPU-k80"),  # memory [N/A]
    ]
    assert capabilities.parse_nvidia_smi_csv("") == []
    # A comma inside the name keeps the fields that follow it in place.
    odd = capabilities.parse_nvidia_smi_csv("0, Board, rev 2, 1024, GPU-x\n")
    assert odd == [models.GPU(0, "Board, rev 2", 1.0, "GPU-x")]


@pytest.mark.parametrize("line", ["0, only two", "zero, Tesla, 1024, GPU-1"])
def test_parse_nvidia_smi_csv_rejects_garbage(line: str) -> None:
    with pytest.raises(errors.ValidationError, match="nvidia-smi line 1"):
        capabilities.parse_nvidia_smi_csv(line)


def test_parse_cuda_version() -> None:
    assert capabilities.parse_cuda_version(NVIDIA_SMI_BANNER) == "12.4"
    assert capabilities.parse_cuda_version("No devices were found") is None


def _fake_nvidia_smi(directory: Path, exit_code: int = 0) -> Path:
    """A real executable answering like nvidia-smi does."""
    script = directory / "nvidia-smi"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "--query-gpu=index,name,memory.total,uuid" ]; then
        cat <<'EOF'
        {NVIDIA_SMI_CSV.splitlines()[0]}
        EOF
        else
        cat <<'EOF'
        {NVIDIA_SMI_BANNER.splitlines()[1]}
        EOF
        fi
        exit {exit_code}
    """))
    script.chmod(0o755)
    return script


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_nvidia_smi_probe_runs_the_command(tmp_path: Path) -> None:
    gpus, cuda = capabilities.probe_gpus_nvidia_smi(str(_fake_nvidia_smi(tmp_path)))
    assert cuda == "12.4"
    assert [(g.index, g.name, g.vram_gib) for g in gpus] == [(0, "NVIDIA GeForce RTX 4090",
                                                              23.99)]
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(RuntimeError, match="exit code 9"):
        capabilities.probe_gpus_nvidia_smi(str(_fake_nvidia_smi(broken, exit_code=9)))
    with pytest.raises(FileNotFoundError):
        capabilities.probe_gpus_nvidia_smi(str(tmp_path / "absent"))


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_detect_falls_back_to_nvidia_smi_when_nvml_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if nvml_works():
        pytest.skip("NVML works here, so nvidia-smi is never consulted")
    _fake_nvidia_smi(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    caps = capabilities.detect()
    assert caps.extra["gpu_probe"] == "nvidia-smi"
    assert caps.cuda_driver == "12.4" and caps.has_cuda
    assert caps.gpus[0].uuid == "GPU-3b6e9f5a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    assert any("NVML unavailable" in n for n in caps.extra["probe_notes"])


# --- fake GPUs (tests only) -----------------------------------------------------------------


def test_fake_gpus_are_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(capabilities.FAKE_GPUS_ENV, json.dumps(
        [{"name": "Fake A100", "vram_gib": 40}, {"vram_gib": 24, "uuid": "GPU-mine"}]))
    caps = capabilities.detect()
    assert caps.extra["fake_gpus"] is True and caps.extra["gpu_probe"] == "fake"
    assert caps.gpus == (models.GPU(0, "Fake A100", 40.0, "GPU-fake-0"),
                         models.GPU(1, "Fake GPU", 24.0, "GPU-mine"))
    assert caps.max_vram_gib == 40.0
    assert "(FAKE, for tests)" in capabilities.format_check(caps)
    assert models.Capabilities.from_dict(caps.to_dict()).extra["fake_gpus"] is True


@pytest.mark.parametrize(("value", "message"), [
    ("not json", "not valid JSON"),
    ('{"name": "x"}', "expected a JSON list"),
    ('[{"vram_gib": "lots"}]', "vram_gib"),
    ('["x"]', "expected an object"),
])
def test_bad_fake_gpus_are_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str,
                                          message: str) -> None:
    monkeypatch.setenv(capabilities.FAKE_GPUS_ENV, value)
    with pytest.raises(errors.ConfigError, match=message) as exc:
        capabilities.detect()
    assert capabilities.FAKE_GPUS_ENV in exc.value.message


def test_fake_ram_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    real = capabilities.detect()
    assert "fake_ram" not in real.extra
    monkeypatch.setenv(capabilities.FAKE_RAM_ENV, "256")
    caps = capabilities.detect()
    assert caps.ram_gib == 256.0 and caps.extra["fake_ram"] is True
    assert "256.00 GiB  (FAKE, for tests)" in capabilities.format_check(caps)
    monkeypatch.setenv(capabilities.FAKE_RAM_ENV, "lots")
    with pytest.raises(errors.ConfigError, match=capabilities.FAKE_RAM_ENV):
        capabilities.detect()


# --- report ---------------------------------------------------------------------------------


def test_format_check_lists_every_field() -> None:
    caps = models.Capabilities(
        host_id="gpu-box", hostname="gpu-box.lab", os="Linux", arch="x86_64", cpus=16,
        ram_gib=62.8, gpus=(models.GPU(0, "RTX 4090", 23.99, "GPU-1"),), cuda_driver="12.4",
        python="3.11.7", torch="2.3.0", git_commit="a" * 40, labels={"rack": "2", "b": "x"},
        slots=2, extra={"gpu_probe": "nvml", "probe_notes": ["cpus: limited to 8"]})
    report = capabilities.format_check(caps)
    for expected in ("host id      gpu-box", "cpus         16", "ram          62.80 GiB",
                     "gpus         1 via nvml", "[0] RTX 4090  24.0 GiB  GPU-1",
                     "cuda driver  12.4", "torch        2.3.0", "labels       b=x, rack=2",
                     "slots        2", "  - cpus: limited to 8"):
        assert expected in report
    assert "FAKE" not in report
