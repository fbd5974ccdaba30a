"""System metrics of a run, recorded as ordinary metric tags under ``sys/``
(docs/metrics-and-artifacts.md, "System metrics").

:class:`Sampler` reads, for one process tree, CPU percent and resident memory; its disk I/O
(the tree's own where the OS tells, else the host's) and the host's network I/O since the
sampler started; and, through NVML when ``nvidia-ml-py`` is installed and a driver answers,
each GPU's utilisation and memory. The agent samples the tree of each process it launched; the
SDK samples its own process outside an agent. psutil and pynvml are imported when a sampler
is made, never by ``import runyard``; without psutil there is no sampler at all
(:func:`sampler_for` says why once, at debug level).

The step of a sample is the whole seconds since the run was created, so samples of later
attempts continue the same time axis instead of overwriting the first attempt's.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runyard import errors

log = logging.getLogger(__name__)

PREFIX = "sys/"
#: Seconds between samples unless the agent's ``--sys-interval-s`` or the SDK's
#: ``RUNYARD_SYS_INTERVAL_S`` says otherwise; 0 turns sampling off.
DEFAULT_INTERVAL_S = 10.0
#: Shortest interval taken (a sample's step is whole seconds).
MIN_INTERVAL_S = 1.0
INTERVAL_ENV = "RUNYARD_SYS_INTERVAL_S"


def parse_interval(value: Any, field: str = INTERVAL_ENV) -> float:
    """A sampling interval: 0 (off) or at least :data:`MIN_INTERVAL_S` seconds; a
    ConfigError naming ``field`` otherwise."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{field}: expected seconds, got {value!r}",
                                 field=field) from None
    if not math.isfinite(seconds) or seconds < 0 or 0 < seconds < MIN_INTERVAL_S:
        raise errors.ConfigError(f"{field}: expected 0 (off) or at least {MIN_INTERVAL_S:g} "
                                 f"seconds, got {value!r}", field=field)
    return seconds


def interval_from_env(env: Mapping[str, str]) -> float:
    """The SDK's interval: ``RUNYARD_SYS_INTERVAL_S``, else the default; a bad value is
    logged once and turns sampling off (a run never fails for it)."""
    raw = env.get(INTERVAL_ENV)
    if raw is None or raw == "":
        return DEFAULT_INTERVAL_S
    try:
        return parse_interval(raw)
    except errors.ConfigError as exc:
        log.warning("runyard: system metrics off: %s", exc.message)
        return 0.0


class Sampler:
    """Samples one process tree (and the GPUs it may use)."""

    def __init__(self, pid: int, *, gpus: Sequence[int] | None = None,
                 nvml: Any = None) -> None:
        import psutil

        self._psutil = psutil
        self.pid = pid
        self._procs: dict[int, Any] = {}
        self._nvml = nvml if nvml is not None else _load_nvml()
        self._gpus = list(gpus) if gpus is not None else None
        net = _try(psutil.net_io_counters)
        self._net0 = (net.bytes_sent, net.bytes_recv) if net is not None else None
        disk = _try(psutil.disk_io_counters)
        self._disk0 = (disk.read_bytes, disk.write_bytes) if disk is not None else None
        self.sample()  # primes cpu_percent, which measures from one call to the next

    def close(self) -> None:
        if self._nvml is not None:
            _try(self._nvml.nvmlShutdown)
            self._nvml = None

    def _tree(self) -> list[Any]:
        """The root and its descendants, the same Process objects from call to call (CPU
        percent is a difference between two calls on one object)."""
        ps = self._psutil
        root = self._procs.get(self.pid)
        if root is None:
            root = ps.Process(self.pid)
        found = [root]
        kids = _try(lambda: root.children(recursive=True)) or []
        for kid in kids:
            found.append(self._procs.get(kid.pid, kid))
        self._procs = {p.pid: p for p in found}
        return found

    def sample(self) -> dict[str, float]:
        """``{tag: value}``; what cannot be read this time is left out. Empty once the
        root process is gone."""
        ps = self._psutil
        out: dict[str, float] = {}
        try:
            tree = self._tree()
        except (ps.NoSuchProcess, ps.AccessDenied):
            return out
        cpu = rss = read = write = 0.0
        io_ok = True
        for proc in tree:
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    if io_ok:
                        io = _try(proc.io_counters)
                        if io is None:
                            io_ok = False
                        else:
                            read += io.read_bytes
                            write += io.write_bytes
            except (ps.NoSuchProcess, ps.ZombieProcess, ps.AccessDenied):
                continue
        out["sys/cpu_percent"] = round(cpu, 3)
        out["sys/rss_bytes"] = float(rss)
        vm = _try(ps.virtual_memory)
        if vm is not None:
            out["sys/host_memory_percent"] = float(vm.percent)
        if io_ok:
            out["sys/disk_read_bytes"], out["sys/disk_write_bytes"] = read, write
        elif self._disk0 is not None:
            disk = _try(ps.disk_io_counters)
            if disk is not None:
                out["sys/disk_read_bytes"] = float(disk.read_bytes - self._disk0[0])
                out["sys/disk_write_bytes"] = float(disk.write_bytes - self._disk0[1])
        if self._net0 is not None:
            net = _try(ps.net_io_counters)
            if net is not None:
                out["sys/net_sent_bytes"] = float(net.bytes_sent - self._net0[0])
                out["sys/net_recv_bytes"] = float(net.bytes_recv - self._net0[1])
        out.update(self._gpu_sample())
        return out

    def _gpu_sample(self) -> dict[str, float]:
        nv = self._nvml
        if nv is None:
            return {}
        out: dict[str, float] = {}
        try:
            indexes = self._gpus if self._gpus is not None else range(nv.nvmlDeviceGetCount())
            for i in indexes:
                handle = nv.nvmlDeviceGetHandleByIndex(int(i))
                util = nv.nvmlDeviceGetUtilizationRates(handle)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                out[f"sys/gpu{i}/util_percent"] = float(util.gpu)
                out[f"sys/gpu{i}/memory_used_bytes"] = float(mem.used)
                if mem.total:
                    out[f"sys/gpu{i}/memory_percent"] = round(100.0 * mem.used / mem.total, 3)
        except Exception as exc:  # a GPU gone, a driver hiccup: CPU metrics still count
            log.debug("NVML sample failed: %r", exc)
        return out


def _load_nvml() -> Any:
    """pynvml, initialised, or None (not installed, no driver, no GPU)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        log.debug("no NVML for system metrics: %r", exc)
        return None
    return pynvml


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def sampler_for(pid: int, *, gpus: Sequence[int] | None = None) -> Sampler | None:
    """A sampler of ``pid``'s tree, or None (no psutil: the SDK-only install; the process
    already gone), said once at debug level."""
    try:
        return Sampler(pid, gpus=gpus)
    except ImportError:
        log.debug("runyard: no system metrics: psutil is not installed (the server extra "
                  "brings it)")
    except Exception as exc:
        log.debug("runyard: no system metrics for pid %d: %r", pid, exc)
    return None


def visible_gpus(env: Mapping[str, str] | None = None) -> list[int] | None:
    """GPU indexes named by ``CUDA_VISIBLE_DEVICES`` when they are plain numbers, else
    None (all of them)."""
    raw = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    return [int(p) for p in parts] if all(p.isdigit() for p in parts) else None


class Recorder:
    """A sampler on a schedule: :meth:`poll` answers the metric rows due now, ``[(step, at,
    {tag: value})]`` with ``step`` the whole seconds since ``origin`` (the run's creation)."""

    def __init__(self, pid: int, *, origin: float, interval_s: float,
                 gpus: Sequence[int] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.pid = pid
        self.origin = origin
        self.interval_s = interval_s
        self.gpus = gpus
        self.clock = clock or time.time
        self._sampler: Sampler | None = None
        self._tried = False
        self._next = self.clock() + interval_s

    def poll(self, *, force: bool = False) -> list[tuple[int, float, dict[str, float]]]:
        """The sample due now (or at once with ``force``), else nothing. The first call
        makes the sampler (CPU percent is measured from it on) and answers nothing."""
        if self.interval_s <= 0:
            return []
        now = self.clock()
        if not self._tried:
            self._tried = True
            self._sampler = sampler_for(self.pid, gpus=self.gpus)
            self._next = now + self.interval_s
            return []
        if self._sampler is None or (now < self._next and not force):
            return []
        self._next = now + self.interval_s
        values = self._sampler.sample()
        if not values:
            return []
        return [(max(0, int(now - self.origin)), now, values)]

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
