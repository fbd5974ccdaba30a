"""System metrics for real: an agent with ``--sys-interval-s 1`` records the CPU and memory
of the process tree it launched as ``sys/`` tags, and a local SDK run (embedded mode, a real
subprocess) records its own. No GPU here: the NVML path is tested in
tests/unit/test_sysmetrics.py with a fake NVML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runyard.store import default_url, open_store

from ..support.agents import AgentProc, Api
from ..support.live_server import LiveServer

pytestmark = pytest.mark.timeout(150)

#: Holds ~64 MiB in a child process and spins until the test says it has seen enough.
BUSY = textwrap.dedent('''
    import json, os, subprocess, sys, time
    cfg = json.load(open(os.environ["RUNYARD_CONFIG_FILE"]))
    child = subprocess.Popen([sys.executable, "-c",
        "import os,time\\nb = bytearray(64 << 20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
        "while not os.path.exists(%r): time.sleep(0.05)" % cfg["done"]])
    deadline = time.time() + 100
    while not os.path.exists(cfg["done"]) and time.time() < deadline:
        sum(range(20000))
    child.wait()
''')


def _tags(api: Api, run_id: str) -> dict[str, int]:
    got = api.http.get(f"/v1/runs/{run_id}/metrics/tags").json()["items"]
    return {t["tag"]: t["count"] for t in got}


def test_agent_records_cpu_and_memory_of_the_process_tree(server: LiveServer,
                                                           tmp_path: Path) -> None:
    script = tmp_path / "busy.py"
    script.write_text(BUSY)
    done = tmp_path / "done"
    api = Api(server)
    agent = AgentProc(server, api.worker_token("sys-agent"), "sys-box", tmp_path / "work",
                      extra_args=["--sys-interval-s", "1"])
    try:
        run_id = api.submit("busy", script, {"done": str(done)})
        deadline = time.monotonic() + 90
        tags: dict[str, int] = {}
        while time.monotonic() < deadline:
            tags = _tags(api, run_id)
            if tags.get("sys/cpu_percent", 0) >= 2 and tags.get("sys/rss_bytes", 0) >= 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no sys metrics in time: {tags}\n{agent.log()[-3000:]}")
        done.write_text("")
        run = api.wait(run_id, ["completed", "failed"], timeout=60)
        assert run["status"] == "completed", run
        points = api.metrics(run_id)
        rss = [p for p in points if p["tag"] == "sys/rss_bytes"]
        cpu = [p for p in points if p["tag"] == "sys/cpu_percent"]
        # The child's 64 MiB count: the tree is sampled, not only the process launched.
        assert max(p["value"] for p in rss) > 64 * 2**20
        assert max(p["value"] for p in cpu) > 0
        assert all(p["attempt"] == 1 for p in rss)
        # Steps are seconds since the run was created: increasing, small.
        steps = [p["step"] for p in rss]
        assert steps == sorted(steps) and steps[-1] < 600
        assert {"sys/net_sent_bytes", "sys/disk_read_bytes"} <= set(_tags(api, run_id))
        assert not any(t.startswith("sys/gpu") for t in _tags(api, run_id))  # none given
        # The series endpoint takes a tag with slashes (the UI's charts ask for it).
        r = api.http.get(f"/v1/runs/{run_id}/metrics/sys%2Frss_bytes/series",
                         params={"points": 10})
        assert r.status_code == 200 and r.json()["total"] == len(rss)
    finally:
        done.write_text("")
        agent.stop()
        api.close()


SDK_RUN = textwrap.dedent('''
    import json, os, sys, time
    import runyard.sdk as sdk
    done = sys.argv[1]
    with sdk.start_run(name="local-sys", project="sys", handle_sigterm=False) as run:
        print(json.dumps({"run_id": run.run_id, "mode": run.mode}), flush=True)
        deadline = time.time() + 100
        step = 0
        while not os.path.exists(done) and time.time() < deadline:
            run.log({"loss": 1.0}, step=step)
            step += 1
            time.sleep(0.05)
''')


def test_local_sdk_run_records_its_own_system_metrics(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = tmp_path / "local_run.py"
    script.write_text(SDK_RUN)
    done = tmp_path / "done"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNYARD_SERVER", "RUNYARD_TOKEN", "RUNYARD_PROGRESS_FILE")}
    env.update(RUNYARD_DATA_DIR=str(data), RUNYARD_SYS_INTERVAL_S="1")
    proc = subprocess.Popen([sys.executable, str(script), str(done)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["mode"] == "embedded"
        store = open_store(default_url(data), upgrade=False)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                tags = {t["tag"]: t["count"] for t in store.metric_tags(first["run_id"])}
                if tags.get("sys/cpu_percent", 0) >= 2 and tags.get("sys/rss_bytes", 0) >= 1:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"no sys metrics in time: {tags}")
            done.write_text("")
            assert proc.wait(60) == 0
            rss = store.list_metric_points(first["run_id"], tag="sys/rss_bytes", limit=1000)
            assert rss and all(p["value"] > 10 * 2**20 for p in rss)  # a Python process
            assert store.get_run(first["run_id"])["status"] == "completed"
        finally:
            store.close()
    finally:
        done.write_text("")
        if proc.poll() is None:
            proc.kill()
        proc.wait()
