"""The system metric sampler: the GPU path with a FAKE NVML (no GPU on the test machines; the
fake stands for pynvml's four calls only), the schedule, the interval's bounds, and the
SDK-only install without psutil. The CPU/RAM path is tested for real in
tests/e2e/test_sysmetrics.py."""

from __future__ import annotations

import logging
import os
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from runyard import errors, sysmetrics
from runyard.agent.daemon import AgentConfig


class FakeNvml:
    """Stands in for pynvml: two GPUs, the second of which fails after a while."""

    def __init__(self) -> None:
        self.shutdown = False
        self.broken = False

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i == 1 and self.broken:
            raise RuntimeError("GPU is lost")
        return i

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=40 + handle, memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=8 * 2**30, free=0)

    def nvmlShutdown(self) -> None:
        self.shutdown = True


def test_gpu_metrics_per_visible_gpu_from_nvml() -> None:
    nv = FakeNvml()
    sampler = sysmetrics.Sampler(os.getpid(), gpus=[1], nvml=nv)
    got = sampler.sample()
    assert got["sys/gpu1/util_percent"] == 41.0
    assert got["sys/gpu1/memory_used_bytes"] == 2 * 2**30
    assert got["sys/gpu1/memory_percent"] == 25.0
    assert not any(k.startswith("sys/gpu0") for k in got)
    assert got["sys/rss_bytes"] > 0 and "sys/cpu_percent" in got
    nv.broken = True  # a failing GPU costs its own metrics only
    got = sampler.sample()
    assert "sys/gpu1/util_percent" not in got and got["sys/rss_bytes"] > 0
    sampler.close()
    assert nv.shutdown


def test_all_gpus_when_none_are_named() -> None:
    got = sysmetrics.Sampler(os.getpid(), nvml=FakeNvml()).sample()
    assert {"sys/gpu0/util_percent", "sys/gpu1/util_percent"} <= set(got)


def test_recorder_primes_then_samples_on_its_schedule() -> None:
    now = [1000.0]
    rec = sysmetrics.Recorder(os.getpid(), origin=990.0, interval_s=5, clock=lambda: now[0])
    assert rec.poll() == []  # primes the sampler
    now[0] += 4.9
    assert rec.poll() == []
    now[0] += 0.2
    rows = rec.poll()
    assert len(rows) == 1 and rows[0][0] == 15 and rows[0][1] == now[0]
    assert rows[0][2]["sys/rss_bytes"] > 0
    assert rec.poll() == [] and len(rec.poll(force=True)) == 1
    rec.close()
    off = sysmetrics.Recorder(os.getpid(), origin=0, interval_s=0)
    assert off.poll() == [] and off.poll(force=True) == []


def test_a_process_gone_gives_nothing() -> None:
    rec = sysmetrics.Recorder(2**22 + 12345, origin=0, interval_s=1)
    assert rec.poll() == [] and rec.poll(force=True) == []


def test_without_psutil_there_is_no_sampler(monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # the SDK-only install
    with caplog.at_level(logging.DEBUG, logger="runyard.sysmetrics"):
        rec = sysmetrics.Recorder(os.getpid(), origin=0, interval_s=1)
        assert rec.poll() == [] and rec.poll(force=True) == []
    said = [r for r in caplog.records if "psutil is not installed" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.DEBUG


@pytest.mark.parametrize("value", ["x", "-1", "0.5", "nan", "inf"])
def test_bad_intervals_are_refused(value: str) -> None:
    with pytest.raises(errors.ConfigError) as e:
        sysmetrics.parse_interval(value)
    assert e.value.details["field"] == "RUNYARD_SYS_INTERVAL_S"
    # The SDK never fails a run for it: sampling is off.
    assert sysmetrics.interval_from_env({"RUNYARD_SYS_INTERVAL_S": value}) == 0.0


def test_intervals() -> None:
    assert sysmetrics.parse_interval("0") == 0.0 and sysmetrics.parse_interval(2) == 2.0
    assert sysmetrics.interval_from_env({}) == sysmetrics.DEFAULT_INTERVAL_S
    with pytest.raises(errors.ConfigError) as e:
        AgentConfig(server="http://127.0.0.1:1", sys_interval_s=0.2).validate()
    assert e.value.details["field"] == "sys_interval_s"
    assert sysmetrics.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == [2, 3]
    assert sysmetrics.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert sysmetrics.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-ab"}) is None
    assert sysmetrics.visible_gpus({}) is None
