"""What this host can run: self-detection for ``runyard agent`` (docs/scheduling.md).

:func:`detect` probes the host once and returns a :class:`runyard.models.Capabilities`.
Every probe fails soft: a missing NVML library, no ``nvidia-smi``, no ``git`` or a
non-checkout work directory leaves that field empty and adds one line to
``extra["probe_notes"]`` so ``runyard agent --check`` can say why.

torch is never imported here (its version is read from package metadata): importing it
takes seconds and hundreds of MiB, and the agent must start fast on a Raspberry Pi.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runyard import errors, models

log = logging.getLogger(__name__)

#: Test-only: a JSON list of GPUs (``[{"name": "...", "vram_gib": 24, "uuid": "..."}]``) that
#: replaces the real GPU probe, so scheduling tests can pretend a CPU box has GPUs. The
#: result is marked ``extra["fake_gpus"] = True``; never set it on a real agent.
FAKE_GPUS_ENV = "RUNYARD_FAKE_GPUS"
#: Test-only: a number of GiB reported as this host's RAM instead of the real total, so two
#: agents on one machine can differ in memory for ``min_ram_gib`` tests. Marked
#: ``extra["fake_ram"] = True``; never set it on a real agent.
FAKE_RAM_ENV = "RUNYARD_FAKE_RAM_GIB"

#: Seconds any external probe command (nvidia-smi, git) may take.
PROBE_TIMEOUT_S = 10.0

_NVIDIA_SMI_QUERY = [
    "--query-gpu=index,name,memory.total,uuid",
    "--format=csv,noheader,nounits",
]
_CUDA_VERSION_RE = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")
_GIB = 1024**3


def detect(
    host_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    slots: int = 1,
    workdir: str | os.PathLike[str] | None = None,
) -> models.Capabilities:
    """Probe this host and return its capabilities.

    ``host_id`` defaults to the host name (characters a host id cannot hold become ``-``);
    ``workdir`` is the checkout whose git commit is reported (none when not given).
    """
    if slots is None or isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise errors.ValidationError(f"slots: must be an integer of at least 1, got {slots!r}",
                                     field="slots")
    labels = dict(labels or {})
    for key, value in labels.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise errors.ValidationError(
                f"labels: keys and values must be strings, got {key!r}={value!r}", field="labels")
    hostname = socket.gethostname()
    if host_id is None:
        host_id = default_host_id(hostname)
    else:
        models.validate_name(host_id, "host_id")

    notes: list[str] = []
    extra: dict[str, Any] = {}
    gpus, cuda_driver, gpu_source = _probe_gpus(notes)
    extra["gpu_probe"] = gpu_source
    if gpu_source == "fake":
        extra["fake_gpus"] = True
    git_commit = probe_git_commit(workdir, notes) if workdir is not None else None
    ram_gib = fake_ram_gib()
    if ram_gib is None:
        ram_gib = probe_ram_gib(notes)
    else:
        extra["fake_ram"] = True
    caps = models.Capabilities(
        host_id=host_id,
        hostname=hostname,
        os=platform.system(),
        arch=platform.machine(),
        cpus=probe_cpus(notes),
        ram_gib=ram_gib,
        gpus=tuple(gpus),
        cuda_driver=cuda_driver,
        python=platform.python_version(),
        torch=package_version("torch"),
        git_commit=git_commit,
        labels=labels,
        slots=slots,
        extra={**extra, "probe_notes": notes},
    )
    for note in notes:
        log.debug("capability probe: %s", note)
    return caps


def default_host_id(hostname: str) -> str:
    """A valid host id made from ``hostname`` (its first label, odd characters as ``-``)."""
    short = hostname.split(".")[0] or hostname
    cleaned = re.sub(r"[^A-Za-z0-9._:+@/-]", "-", short).lstrip("._:+@/-")[:200]
    return cleaned or "localhost"


def parse_labels(text: str | None) -> dict[str, str]:
    """Parse ``--labels k=v,k2=v2`` (blank means none)."""
    labels: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise errors.ValidationError(f"labels: expected key=value, got {item!r}",
                                         field="labels")
        labels[key.strip()] = value.strip()
    return labels


# --- CPU and memory -------------------------------------------------------------------------


def probe_cpus(notes: list[str]) -> float:
    """CPUs this process may use: affinity mask, capped by a cgroup CPU quota if any."""
    try:
        count = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        count = float(os.cpu_count() or 1)
    quota = _cgroup_cpu_quota(notes)
    if quota is not None and quota < count:
        notes.append(f"cpus: limited to {quota:g} by the cgroup CPU quota")
        count = quota
    return count


def _cgroup_cpu_quota(notes: list[str]) -> float | None:
    # cgroup v2 first ("max 100000" or "200000 100000"), then v1.
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return max(int(text[0]) / int(text[1]), 0.01)
        return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return max(quota / period, 0.01) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def probe_ram_gib(notes: list[str]) -> float:
    """Total memory in GiB, capped by a cgroup memory limit if any."""
    total: float | None = None
    try:
        import psutil

        total = float(psutil.virtual_memory().total)
    except Exception as exc:  # psutil missing or unsupported platform
        notes.append(f"ram: psutil unavailable ({exc}); using sysconf")
        try:
            total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError) as exc2:
            notes.append(f"ram: cannot read total memory ({exc2})")
    limit = _cgroup_memory_limit()
    if limit is not None and (total is None or limit < total):
        notes.append(f"ram: limited to {limit / _GIB:.2f} GiB by the cgroup memory limit")
        total = limit
    return round((total or 0.0) / _GIB, 2)


def _cgroup_memory_limit() -> float | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = float(text)
        except ValueError:
            return None
        # cgroup v1 reports "no limit" as a huge page-aligned number.
        return value if value < 2**60 else None
    return None


def fake_ram_gib() -> float | None:
    """:data:`FAKE_RAM_ENV` (test-only) as GiB, or None when unset."""
    text = os.environ.get(FAKE_RAM_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise errors.ConfigError(f"{FAKE_RAM_ENV}: expected a number of GiB, got {text!r}")
    return value


# --- GPUs -----------------------------------------------------------------------------------


def _probe_gpus(notes: list[str]) -> tuple[list[models.GPU], str | None, str]:
    """(gpus, cuda driver version, which probe answered)."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake:
        return parse_fake_gpus(fake), None, "fake"
    try:
        gpus, driver = probe_gpus_nvml()
        return gpus, driver, "nvml"
    except Exception as exc:  # no driver, no library, NVML error: all mean "try nvidia-smi"
        notes.append(f"gpus: NVML unavailable ({_describe(exc)})")
    try:
        gpus, driver = probe_gpus_nvidia_smi()
        return gpus, driver, "nvidia-smi"
    except Exception as exc:
        notes.append(f"gpus: nvidia-smi unavailable ({_describe(exc)})")
    return [], None, "none"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def probe_gpus_nvml() -> tuple[list[models.GPU], str | None]:
    """GPUs and CUDA driver version through NVML (``nvidia-ml-py``); raises when unavailable."""
    import pynvml

    pynvml.nvmlInit()
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(models.GPU(
                index=index,
                name=_text(pynvml.nvmlDeviceGetName(handle)),
                vram_gib=round(float(memory.total) / _GIB, 2),
                uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
            ))
        driver: str | None = None
        try:
            version = int(pynvml.nvmlSystemGetCudaDriverVersion())
            driver = f"{version // 1000}.{(version % 1000) // 10}"
        except Exception:  # old drivers lack the call; GPUs are still usable
            driver = None
        return gpus, driver
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def probe_gpus_nvidia_smi(executable: str = "nvidia-smi") -> tuple[list[models.GPU], str | None]:
    """GPUs and CUDA driver version by running ``nvidia-smi``; raises when it cannot run."""
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(f"{executable} not found on PATH")
    out = subprocess.run([path, *_NVIDIA_SMI_QUERY], capture_output=True, text=True,
                         timeout=PROBE_TIMEOUT_S, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"exit code {out.returncode}: {out.stderr.strip()[:200]}")
    gpus = parse_nvidia_smi_csv(out.stdout)
    # The CSV query has no CUDA version field; the plain banner shows it.
    banner = subprocess.run([path], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                            check=False)
    return gpus, parse_cuda_version(banner.stdout)


def parse_nvidia_smi_csv(text: str) -> list[models.GPU]:
    """Parse ``index, name, memory.total [MiB], uuid`` rows (noheader, nounits)."""
    gpus = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            raise errors.ValidationError(
                f"nvidia-smi line {lineno}: expected 4 fields, got {line!r}", field="nvidia-smi")
        # A GPU name could contain a comma; index is first and memory/uuid are last.
        index_s, memory_s, uuid = parts[0], parts[-2], parts[-1]
        name = ", ".join(parts[1:-2])
        try:
            index = int(index_s)
        except ValueError:
            raise errors.ValidationError(
                f"nvidia-smi line {lineno}: index {index_s!r} is not an integer",
                field="nvidia-smi") from None
        try:
            vram_gib = round(float(memory_s) / 1024.0, 2)  # MiB
        except ValueError:  # "[N/A]", "[Not Supported]"
            vram_gib = 0.0
        if not math.isfinite(vram_gib):
            vram_gib = 0.0
        gpus.append(models.GPU(index=index, name=name, vram_gib=vram_gib, uuid=uuid))
    return gpus


def parse_cuda_version(banner: str) -> str | None:
    """The ``CUDA Version: 12.4`` of ``nvidia-smi``'s banner, if shown."""
    match = _CUDA_VERSION_RE.search(banner)
    return match.group(1) if match else None


def parse_fake_gpus(text: str) -> list[models.GPU]:
    """Parse :data:`FAKE_GPUS_ENV` (test-only): a JSON list of GPU objects."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.ConfigError(f"{FAKE_GPUS_ENV}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise errors.ConfigError(f"{FAKE_GPUS_ENV}: expected a JSON list of GPUs")
    try:
        caps = models.Capabilities.from_dict(
            {"host_id": "fake", "gpus": [
                {"index": i, **g} if isinstance(g, dict) else g for i, g in enumerate(data)]},
            prefix=f"{FAKE_GPUS_ENV}: ")
    except errors.ValidationError as exc:
        raise errors.ConfigError(exc.message) from exc
    return [models.GPU(index=g.index, name=g.name or "Fake GPU", vram_gib=g.vram_gib,
                       uuid=g.uuid or f"GPU-fake-{g.index}") for g in caps.gpus]


# --- software -------------------------------------------------------------------------------


def package_version(name: str) -> str | None:
    """Installed version of a distribution, read from metadata (never imported)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_git_commit(workdir: str | os.PathLike[str], notes: list[str]) -> str | None:
    """``git rev-parse HEAD`` of ``workdir``, or None (with a note) when there is none."""
    git = shutil.which("git")
    if git is None:
        notes.append("git: not found on PATH")
        return None
    if not Path(workdir).is_dir():
        notes.append(f"git: work directory {os.fspath(workdir)!r} does not exist")
        return None
    try:
        out = subprocess.run(
            [git, "-C", os.fspath(workdir), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"git: {_describe(exc)}")
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        first = (out.stderr.strip().splitlines() or ["no commit"])[0]
        notes.append(f"git: no commit for {os.fspath(workdir)!r} ({first})")
        return None
    return commit


# --- report ---------------------------------------------------------------------------------


def format_check(caps: models.Capabilities) -> str:
    """A readable multi-line report for ``runyard agent --check``."""
    lines = [
        f"host id      {caps.host_id}",
        f"hostname     {caps.hostname}",
        f"platform     {caps.os} {caps.arch}",
        f"cpus         {caps.cpus:g}",
        f"ram          {caps.ram_gib:.2f} GiB"
        + ("  (FAKE, for tests)" if caps.extra.get("fake_ram") else ""),
    ]
    source = caps.extra.get("gpu_probe", "?")
    if caps.gpus:
        fake = "  (FAKE, for tests)" if caps.extra.get("fake_gpus") else ""
        lines.append(f"gpus         {len(caps.gpus)} via {source}{fake}")
        for gpu in caps.gpus:
            lines.append(f"  [{gpu.index}] {gpu.name}  {gpu.vram_gib:.1f} GiB  {gpu.uuid}")
    else:
        lines.append("gpus         none (CPU only)")
    lines += [
        f"cuda driver  {caps.cuda_driver or '-'}",
        f"python       {caps.python or '-'}",
        f"torch        {caps.torch or 'not installed'}",
        f"git commit   {caps.git_commit or '-'}",
        "labels       " + (", ".join(f"{k}={v}" for k, v in sorted(caps.labels.items())) or "-"),
        f"slots        {caps.slots}",
    ]
    notes = caps.extra.get("probe_notes") or []
    if notes:
        lines.append("notes")
        lines += [f"  - {note}" for note in notes]
    return "\n".join(lines)
